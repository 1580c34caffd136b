/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uffd source's ksubs and their source_ops (uffd-ksub.c). */
#ifndef MMN_DAEMON_SOURCE_UFFD_KSUB_H
#define MMN_DAEMON_SOURCE_UFFD_KSUB_H

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

struct ksub;

/* The live ksub @id, or NULL. */
struct ksub *mmn__uffd_ksub_find(struct uffd_source *s, uint32_t id);

/* source_ops.ksub_add, ksub_del, ksub_set_blocking, ksub_resynced. */
int mmn__uffd_ksub_add(struct source *src, const struct source_target *st, uint64_t start, uint64_t length,
		       bool blocking, uint32_t timeout_ms, uint32_t *ksub_id);
int mmn__uffd_ksub_del(struct source *src, uint32_t id);
int mmn__uffd_ksub_set_blocking(struct source *src, uint32_t id, bool blocking);
int mmn__uffd_ksub_resynced(struct source *src, uint32_t id);

#endif
