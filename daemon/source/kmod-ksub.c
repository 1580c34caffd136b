/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source's table of the kernel subscriptions the broker holds:
 * open addressing, linear probing, backward-shift deletion.
 *
 * Everything here runs on the loop thread (source.h); nothing is locked.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/genetlink.h>
#include <linux/mmn.h>
#include <linux/netlink.h>

#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "source/kmod-ksub.h"

#include "source/kmod-source.h"

/* ---- the ksub table ------------------------------------------------------ */

static size_t ksub_hash(uint32_t id, size_t cap)
{
	return (size_t)(id * 2654435761u) & (cap - 1);
}

struct ksub_slot *mmn__kmod_ksub_find(struct kmod_source *ks, uint32_t id)
{
	size_t i = ksub_hash(id, ks->ksub_cap);

	while (ks->ksubs[i].used) {
		if (ks->ksubs[i].id == id)
			return &ks->ksubs[i];
		i = (i + 1) & (ks->ksub_cap - 1);
	}
	return NULL;
}

static void ksub_place(struct ksub_slot *tab, size_t cap, const struct ksub_slot *k)
{
	size_t i = ksub_hash(k->id, cap);

	while (tab[i].used)
		i = (i + 1) & (cap - 1);
	tab[i] = *k;
}

int mmn__kmod_ksub_insert(struct kmod_source *ks, uint32_t id, bool blocking, uint64_t born)
{
	struct ksub_slot k = { .id = id, .born = born, .used = true, .blocking = blocking };

	if (mmn__kmod_ksub_find(ks, id))
		return -EEXIST;
	if ((ks->nksubs + 1) * 2 > ks->ksub_cap) { /* keep the load under 1/2 */
		size_t cap = ks->ksub_cap * 2;
		struct ksub_slot *tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return -ENOMEM;
		for (size_t i = 0; i < ks->ksub_cap; i++)
			if (ks->ksubs[i].used)
				ksub_place(tab, cap, &ks->ksubs[i]);
		free(ks->ksubs);
		ks->ksubs = tab;
		ks->ksub_cap = cap;
	}
	ksub_place(ks->ksubs, ks->ksub_cap, &k);
	ks->nksubs++;
	return 0;
}

/* Backward-shift deletion: no tombstones. */
void mmn__kmod_ksub_remove(struct kmod_source *ks, struct ksub_slot *k)
{
	size_t mask = ks->ksub_cap - 1, i = (size_t)(k - ks->ksubs), j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (!ks->ksubs[j].used)
			break;
		size_t h = ksub_hash(ks->ksubs[j].id, ks->ksub_cap);
		/* move j back into the hole at i unless its home lies in (i, j] */
		if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
			ks->ksubs[i] = ks->ksubs[j];
			i = j;
		}
	}
	ks->ksubs[i].used = false;
	ks->nksubs--;
}

/* The ksub a message read as @rx is about, if the broker still holds it. */
struct ksub_slot *mmn__kmod_ksub_for(struct kmod_source *ks, uint32_t id, uint64_t rx)
{
	struct ksub_slot *k = mmn__kmod_ksub_find(ks, id);

	return k && k->born <= rx ? k : NULL;
}
