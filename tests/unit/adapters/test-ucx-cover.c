/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * adapters/ucx/cover.c: the gaps of a range, insertion and removal keep the
 * entries sorted and disjoint, the gap list is cut at max but counted in
 * full, eviction picks the oldest entry outside a range; then 20000 random
 * operations against a page bitmap (fixed seed).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cover.h"
#include "lib/prng.h"
#include "tap.h"

#define P      0x1000ull
#define NPAGES 256

static struct cover_ent *ent(uint64_t a, uint64_t b)
{
	struct cover_ent *e = calloc(1, sizeof(*e));

	e->start = a * P;
	e->end = b * P;
	return e;
}

static void basics(void)
{
	struct cover c = {0};
	struct cover_gap g[4];
	struct cover_ent *a = ent(2, 3), *b = ent(1, 2), *d = ent(8, 9);

	tap_is_u64(cover_gaps(&c, P, 3 * P, g, 4), 1, "empty: one gap");
	tap_ok(g[0].start == P && g[0].end == 3 * P, "the gap is the range");
	tap_is_int(cover_insert(&c, a), 0, "insert [2,3)");
	tap_is_u64(cover_gaps(&c, P, 4 * P, g, 4), 2, "two gaps around it");
	tap_ok(g[0].start == P && g[0].end == 2 * P && g[1].start == 3 * P && g[1].end == 4 * P,
	       "[1,2) and [3,4)");
	tap_is_u64(cover_gaps(&c, P, 4 * P, g, 1), 2, "max 1: still counts 2");
	tap_is_u64(cover_gaps(&c, 2 * P, 3 * P, NULL, 0), 0, "[2,3) covered");
	tap_is_int(cover_insert(&c, d), 0, "insert [8,9)");
	tap_is_int(cover_insert(&c, b), 0, "insert [1,2), adjacent");
	tap_is_u64(cover_gaps(&c, P, 3 * P, NULL, 0), 0, "[1,3) covered by two entries");
	tap_ok(c.n == 3 && c.v[0] == b && c.v[1] == a && c.v[2] == d, "sorted by start");
	tap_ok(cover_oldest_outside(&c, 0, 100 * P) == NULL, "nothing outside a range covering all");
	tap_ok(cover_oldest_outside(&c, 8 * P, 9 * P) == a, "oldest outside [8,9) is [2,3)");
	tap_ok(cover_oldest_outside(&c, 2 * P, 3 * P) == d, "oldest outside [2,3) is [8,9)");
	cover_remove(&c, a);
	tap_ok(!a->in_table && c.n == 2, "removed [2,3)");
	tap_is_u64(cover_gaps(&c, P, 3 * P, g, 4), 1, "[2,3) is a gap again");
	cover_remove(&c, a);
	tap_is_u64(c.n, 2, "removing it twice changes nothing");
	cover_fini(&c);
	free(a);
	free(b);
	free(d);
}

/* The bitmap's gaps of [a, b) (pages), as cover_gaps() writes them. */
static size_t model_gaps(const bool *used, unsigned a, unsigned b, struct cover_gap *out, size_t max)
{
	size_t n = 0;

	for (unsigned i = a; i < b;) {
		unsigned j = i;

		if (used[i]) {
			i++;
			continue;
		}
		while (j < b && !used[j])
			j++;
		if (n < max)
			out[n] = (struct cover_gap){i * P, j * P};
		n++;
		i = j;
	}
	return n;
}

static void random_ops(void)
{
	struct cover c = {0};
	struct cover_ent *owner[NPAGES] = {0};
	bool used[NPAGES] = {0};
	uint64_t seed = 0x6d6d6e;
	unsigned bad = 0;

	for (int op = 0; op < 20000; op++) {
		unsigned a = (unsigned)prng_below(&seed, NPAGES), b = a + 1 + (unsigned)prng_below(&seed, 16);
		struct cover_gap g[8], m[8];
		size_t n, mn;

		b = b > NPAGES ? NPAGES : b;
		n = cover_gaps(&c, a * P, b * P, g, 8);
		mn = model_gaps(used, a, b, m, 8);
		bad += n != mn || memcmp(g, m, (n < 8 ? n : 8) * sizeof(*g)) != 0;
		if (prng_below(&seed, 3) && n && n <= 8) { /* fill the gaps */
			for (size_t k = 0; k < n; k++) {
				struct cover_ent *e = ent(g[k].start / P, g[k].end / P);

				bad += cover_insert(&c, e) != 0;
				for (uint64_t p = g[k].start / P; p < g[k].end / P; p++)
					used[p] = true, owner[p] = e;
			}
		} else if (owner[a]) { /* remove the entry at a */
			struct cover_ent *e = owner[a];

			cover_remove(&c, e);
			for (uint64_t p = e->start / P; p < e->end / P; p++)
				used[p] = false, owner[p] = NULL;
			free(e);
		}
		for (size_t k = 1; k < c.n; k++)
			bad += c.v[k - 1]->end > c.v[k]->start;
	}
	tap_is_int(bad, 0, "20000 random operations agree with a page bitmap, entries sorted and disjoint");
	while (c.n) {
		struct cover_ent *e = c.v[0];

		cover_remove(&c, e);
		free(e);
	}
	cover_fini(&c);
}

int main(void)
{
	basics();
	random_ops();
	return tap_done();
}
