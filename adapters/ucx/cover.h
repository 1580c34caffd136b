/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cover: the disjoint address ranges the UCX adapter has subscribed,
 * kept sorted by start, each with its libmmn subscription.  A plain data
 * structure: no locking (ucx.c holds its table lock around every call) and
 * no call into libmmn or UCX.
 *
 * Lifetime: an entry is allocated by the adapter, inserted once, and
 * removed at most once; whoever removes it (under the table lock) owns it
 * from then on: it unsubscribes and frees it.
 */
#ifndef MMN_UCX_COVER_H
#define MMN_UCX_COVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mmn_sub;

struct cover_ent {
	uint64_t start, end; /* [start, end), page aligned */
	uint64_t serial;     /* insertion order: the oldest is evicted first */
	struct mmn_sub *sub; /* set before insertion, never changed */
	bool in_table;	     /* inserted and not yet removed */
	bool released;	     /* the subscription was revoked: never (again) inserted */
};

struct cover_gap {
	uint64_t start, end;
};

struct cover {
	struct cover_ent **v; /* sorted by start, disjoint */
	size_t n, cap;
	uint64_t serial;
};

/*
 * Writes the parts of [start, end) no entry covers, in address order, into
 * @out (at most @max of them).  Return: how many there are in all (more
 * than @max when they did not fit); 0 when the range is covered.
 */
size_t cover_gaps(const struct cover *c, uint64_t start, uint64_t end, struct cover_gap *out, size_t max);

/* Inserts @e, which must not overlap an entry.  0 or -ENOMEM. */
int cover_insert(struct cover *c, struct cover_ent *e);

/* Removes @e (in_table must be set); clears in_table. */
void cover_remove(struct cover *c, struct cover_ent *e);

/* The oldest entry not overlapping [start, end), or NULL. */
struct cover_ent *cover_oldest_outside(const struct cover *c, uint64_t start, uint64_t end);

/* Frees the array (not the entries). */
void cover_fini(struct cover *c);

#endif
