/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A sorted set of disjoint address spans [start, end), by start: the
 * monitor's live subscriptions.  The set holds pointers to spans embedded
 * in the caller's objects and never allocates after spans_init(), so that
 * it can be used under a lock that must not wait for page faults.
 * Not thread-safe: the caller serialises every call.
 */
#ifndef MMN_LIBFABRIC_SPANS_H
#define MMN_LIBFABRIC_SPANS_H

#include <stddef.h>
#include <stdint.h>

struct span {
	uint64_t start, end; /* start < end */
};

struct spans {
	struct span **v; /* sorted by start; spans never overlap */
	size_t n, cap;
};

/* Room for @cap spans; 0 or -ENOMEM. */
int spans_init(struct spans *s, size_t cap);
void spans_fini(struct spans *s);

/* The span that contains all of [start, end), or NULL. */
struct span *spans_covering(const struct spans *s, uint64_t start, uint64_t end);

/*
 * The spans that overlap or touch [start, end): *@first is the index of the
 * first of them; returns how many (consecutive from *@first).
 */
size_t spans_touching(const struct spans *s, uint64_t start, uint64_t end, size_t *first);

/* Insert @sp, which overlaps no span of the set: 0, -ENOSPC (full) or -EEXIST (overlap). */
int spans_insert(struct spans *s, struct span *sp);

/* Remove @sp (a member; nothing happens otherwise). */
void spans_remove(struct spans *s, struct span *sp);

#endif
