/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kmod source's table of the ksubs the broker holds (kmod-ksub.c). */
#ifndef MMN_DAEMON_SOURCE_KMOD_KSUB_H
#define MMN_DAEMON_SOURCE_KMOD_KSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/netlink.h>

#include <uv.h>

struct kmod_source;

struct ksub_slot;

/* The ksub @id, or NULL. */
struct ksub_slot *mmn__kmod_ksub_find(struct kmod_source *ks, uint32_t id);
/* Add ksub @id created by the answer read as @born: 0, -EEXIST or -ENOMEM. */
int mmn__kmod_ksub_insert(struct kmod_source *ks, uint32_t id, bool blocking, uint64_t born);
/* Remove @k (a slot of the table). */
void mmn__kmod_ksub_remove(struct kmod_source *ks, struct ksub_slot *k);
/* The ksub a message read as @rx is about, if the broker still holds it. */
struct ksub_slot *mmn__kmod_ksub_for(struct kmod_source *ks, uint32_t id, uint64_t rx);

#endif
