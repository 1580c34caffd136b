/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The cover: sorted disjoint ranges; binary search for lookups (cover.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cover.h"

/* Index of the first entry whose end is above @addr (n when none). */
static size_t first_ending_after(const struct cover *c, uint64_t addr)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->v[mid]->end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

size_t cover_gaps(const struct cover *c, uint64_t start, uint64_t end, struct cover_gap *out, size_t max)
{
	size_t n = 0;
	uint64_t at = start;

	for (size_t i = first_ending_after(c, start); i < c->n && at < end; i++) {
		const struct cover_ent *e = c->v[i];

		if (e->start >= end)
			break;
		if (e->start > at) {
			if (n < max)
				out[n] = (struct cover_gap){at, e->start};
			n++;
		}
		at = e->end;
	}
	if (at < end) {
		if (n < max)
			out[n] = (struct cover_gap){at, end};
		n++;
	}
	return n;
}

int cover_insert(struct cover *c, struct cover_ent *e)
{
	size_t i;

	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct cover_ent **v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	i = first_ending_after(c, e->start);
	memmove(&c->v[i + 1], &c->v[i], (c->n - i) * sizeof(*c->v));
	c->v[i] = e;
	c->n++;
	e->serial = ++c->serial;
	e->in_table = true;
	return 0;
}

void cover_remove(struct cover *c, struct cover_ent *e)
{
	size_t i = first_ending_after(c, e->start);

	if (i >= c->n || c->v[i] != e)
		return; /* not ours: in_table was wrong, keep the table intact */
	memmove(&c->v[i], &c->v[i + 1], (c->n - i - 1) * sizeof(*c->v));
	c->n--;
	e->in_table = false;
}

struct cover_ent *cover_oldest_outside(const struct cover *c, uint64_t start, uint64_t end)
{
	struct cover_ent *best = NULL;

	for (size_t i = 0; i < c->n; i++) {
		struct cover_ent *e = c->v[i];

		if (e->end > start && e->start < end)
			continue;
		if (!best || e->serial < best->serial)
			best = e;
	}
	return best;
}

void cover_fini(struct cover *c)
{
	free(c->v);
	*c = (struct cover){0};
}
