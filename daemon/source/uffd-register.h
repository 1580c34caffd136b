/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uffd source's registrations of client ranges (uffd-register.c). */
#ifndef MMN_DAEMON_SOURCE_UFFD_REGISTER_H
#define MMN_DAEMON_SOURCE_UFFD_REGISTER_H

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

/* source_ops.uffd_register and uffd_unregister. */
int mmn__uffd_register(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end,
		       bool strict);
void mmn__uffd_unregister(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end);

#endif
