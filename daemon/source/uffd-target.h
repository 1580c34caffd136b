/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uffd source's targets, one per process with an attached uffd (uffd-target.c). */
#ifndef MMN_DAEMON_SOURCE_UFFD_TARGET_H
#define MMN_DAEMON_SOURCE_UFFD_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

struct source;
struct source_target;
struct target;
struct uffd_source;
struct watch;

/* The linked target of @pid, or NULL. */
struct target *mmn__uffd_target_find(struct uffd_source *s, pid_t pid);
/* Free @t once nobody can reach it any more. */
void mmn__uffd_target_maybe_free(struct target *t);

#endif
