/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An interval index: an AVL tree ordered by (start, last, address) and
 * augmented with the largest `last` of each subtree, so that an overlap
 * query visits O(log n + k) nodes.  Intervals are closed: [start, last].
 *
 * Nodes are embedded in their owner (a subscription, a kernel subscription);
 * the tree never allocates.  Not thread-safe: mmnd has one loop.  A query
 * callback must not change the tree it walks.
 */
#ifndef MMN_DAEMON_INDEX_H
#define MMN_DAEMON_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct itree_node {
	uint64_t start, last; /* closed interval; set before insert, fixed while linked */
	uint64_t max;	      /* largest `last` in this subtree */
	struct itree_node *left, *right;
	int height;
};

struct itree {
	struct itree_node *root;
	size_t count;
};

#define ITREE_INIT                                                                                           \
	{                                                                                                    \
		NULL, 0                                                                                      \
	}

void mmn__itree_insert(struct itree *t, struct itree_node *n);
/* @n must be linked in @t. */
void mmn__itree_remove(struct itree *t, struct itree_node *n);

/*
 * Call @fn for every node overlapping [@start, @last], in ascending order of
 * start.  A non-zero return from @fn stops the walk and is returned.
 */
typedef int (*itree_visit_fn)(struct itree_node *n, void *ud);
int mmn__itree_query(const struct itree *t, uint64_t start, uint64_t last, itree_visit_fn fn, void *ud);

/* Height of the tree (0 when empty), for tests. */
int mmn__itree_height(const struct itree *t);
/* Check the AVL and max invariants; 0 or -EUCLEAN.  For tests. */
int mmn__itree_check(const struct itree *t);

#endif
