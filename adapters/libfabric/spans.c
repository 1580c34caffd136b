/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "spans.h"

int spans_init(struct spans *s, size_t cap)
{
	s->v = calloc(cap ? cap : 1, sizeof(*s->v));
	s->n = 0;
	s->cap = cap;
	return s->v ? 0 : -ENOMEM;
}

void spans_fini(struct spans *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

/* The index of the first span whose end is above @addr (s->n when none). */
static size_t first_ending_after(const struct spans *s, uint64_t addr)
{
	size_t lo = 0, hi = s->n;

	/* Disjoint and sorted by start, so the ends are sorted too. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid]->end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct span *spans_covering(const struct spans *s, uint64_t start, uint64_t end)
{
	size_t i = first_ending_after(s, start);

	if (i < s->n && s->v[i]->start <= start && end <= s->v[i]->end)
		return s->v[i];
	return NULL;
}

size_t spans_touching(const struct spans *s, uint64_t start, uint64_t end, size_t *first)
{
	/* A span ending exactly at start touches it. */
	size_t i = first_ending_after(s, start ? start - 1 : 0), j = i;

	while (j < s->n && s->v[j]->start <= end)
		j++;
	*first = i;
	return j - i;
}

int spans_insert(struct spans *s, struct span *sp)
{
	size_t i = first_ending_after(s, sp->start);

	if (i < s->n && s->v[i]->start < sp->end)
		return -EEXIST;
	if (s->n == s->cap)
		return -ENOSPC;
	memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
	s->v[i] = sp;
	s->n++;
	return 0;
}

void spans_remove(struct spans *s, struct span *sp)
{
	size_t i = first_ending_after(s, sp->start);

	if (i >= s->n || s->v[i] != sp)
		return;
	memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
	s->n--;
}
