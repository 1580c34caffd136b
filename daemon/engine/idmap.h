/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An id map: 64-bit id -> object, an intrusive hash with chaining.  The
 * node is embedded in its owner (a subscription, a kernel subscription, an
 * event); the map holds only a bucket array, a power of two that doubles
 * when the count passes it, so a lookup is O(1) on average at any size.
 *
 * Allocation: only mmn__idmap_reserve() and mmn__idmap_add() allocate, and
 * only to grow the bucket array.  A failed growth is not an error: the map
 * keeps working with longer chains, so adding never fails and nothing is
 * ever lost.  A caller that must not allocate on some path reserves first.
 * Not thread-safe (mmnd has one loop thread).
 */
#ifndef MMN_DAEMON_IDMAP_H
#define MMN_DAEMON_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap_node {
	struct idmap_node *next; /* the bucket's chain */
	uint64_t id;		 /* set before add, fixed while linked */
};

struct idmap {
	struct idmap_node **buckets; /* NULL: no array yet, @one is the only bucket */
	struct idmap_node *one;
	size_t mask; /* buckets - 1 (0 without an array) */
	size_t count;
};

/* Room for @n ids without growing later (0 or -ENOMEM; the map is unchanged on failure). */
int mmn__idmap_reserve(struct idmap *m, size_t n);
/* Link @n (its id must not be linked already). */
void mmn__idmap_add(struct idmap *m, struct idmap_node *n);
/* Unlink @n, which must be linked in @m. */
void mmn__idmap_del(struct idmap *m, struct idmap_node *n);
struct idmap_node *mmn__idmap_find(const struct idmap *m, uint64_t id);
/* Free the bucket array (the nodes belong to their owners). */
void mmn__idmap_free(struct idmap *m);

#endif
