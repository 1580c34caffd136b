/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The interval index against a brute-force model: random inserts, removes
 * and overlap queries (>= 100,000 operations), with the AVL and max
 * invariants checked along the way and the height bound at the end.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/itree.h"
#include "lib/prng.h"
#include "tap.h"

#define N   4096
#define OPS 200000

struct item {
	struct itree_node node;
	bool in;
};

static struct item items[N];

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	/* xorshift64*: deterministic, so a failure reproduces. */
	return prng_xorshift(&rng_state);
}

struct qres {
	unsigned char seen[N];
	size_t n;
	uint64_t last_start;
	bool ordered;
};

static int visit(struct itree_node *n, void *ud)
{
	struct qres *q = ud;
	struct item *it = (struct item *)n;

	q->seen[it - items]++;
	q->n++;
	if (n->start < q->last_start)
		q->ordered = false;
	q->last_start = n->start;
	return 0;
}

static int count(struct itree_node *n, void *ud)
{
	(*(size_t *)ud)++;
	return 0;
}

static int stop_at_first(struct itree_node *n, void *ud)
{
	(*(int *)ud)++;
	return 1;
}

static void random_interval(uint64_t space, uint64_t *s, uint64_t *l)
{
	uint64_t a = rnd() % space, len = rnd() % 64 == 0 ? rnd() % space : rnd() % (space / 256 + 1);

	*s = a;
	*l = a + len < a || a + len >= space ? space - 1 : a + len;
}

/* What the random run saw. */
struct tally {
	size_t nin, queries, mismatches, order_bad, checks_bad, k_total;
};

/* Insert a random item not in @t (some exact duplicates and point intervals). */
static void op_insert(struct itree *t, uint64_t space, struct tally *y)
{
	struct item *it = &items[rnd() % N];

	if (it->in)
		return;
	random_interval(space, &it->node.start, &it->node.last);
	if (rnd() % 10 == 0 && y->nin) {
		it->node.start = items[rnd() % N].node.start;
		it->node.last = it->node.start + rnd() % 3;
	}
	mmn__itree_insert(t, &it->node);
	it->in = true;
	y->nin++;
}

/* A random overlap query against brute force over the model. */
static void op_query(struct itree *t, uint64_t space, struct tally *y)
{
	struct qres q = {.ordered = true};
	uint64_t qs, ql;
	bool ok = true;

	random_interval(space, &qs, &ql);
	mmn__itree_query(t, qs, ql, visit, &q);
	for (size_t i = 0; i < N; i++) {
		bool want = items[i].in && items[i].node.start <= ql && items[i].node.last >= qs;

		if (q.seen[i] != (want ? 1 : 0))
			ok = false;
	}
	y->queries++;
	y->k_total += q.n;
	if (!ok)
		y->mismatches++;
	if (!q.ordered)
		y->order_bad++;
}

static void random_run(struct itree *t, struct tally *y)
{
	uint64_t space = 1 << 20;

	for (long op = 0; op < OPS; op++) {
		uint64_t r = rnd() % 100;

		if (r < 35) {
			op_insert(t, space, y);
		} else if (r < 65) {
			struct item *it = &items[rnd() % N];

			if (it->in) {
				mmn__itree_remove(t, &it->node);
				it->in = false;
				y->nin--;
			}
		} else {
			op_query(t, space, y);
		}
		if (op % 1000 == 0 && mmn__itree_check(t) < 0)
			y->checks_bad++;
	}
}

/* Edge: intervals touching the ends of the 64-bit space. */
static void test_edges(void)
{
	struct itree e = ITREE_INIT;
	struct item a = {.node = {.start = 0, .last = 0}},
		    z = {.node = {.start = UINT64_MAX - 1, .last = UINT64_MAX}};
	size_t n = 0;

	mmn__itree_insert(&e, &a.node);
	mmn__itree_insert(&e, &z.node);
	mmn__itree_query(&e, UINT64_MAX, UINT64_MAX, count, &n);
	tap_ok(n == 1, "index: query at the top of the space");
	n = 0;
	mmn__itree_query(&e, 1, UINT64_MAX - 2, count, &n);
	tap_ok(n == 0, "index: nothing between the ends");
	n = 0;
	mmn__itree_query(&e, 5, 4, count, &n);
	tap_ok(n == 0, "index: an empty query range visits nothing");
	mmn__itree_remove(&e, &a.node);
	mmn__itree_remove(&e, &z.node);
	tap_ok(e.root == NULL && e.count == 0, "index: emptied");
}

int main(void)
{
	struct itree t = ITREE_INIT;
	struct tally y = {0};
	int hits = 0;

	random_run(&t, &y);
	tap_ok(t.count == y.nin, "index: count matches the model (%zu)", y.nin);
	tap_is_int(y.mismatches, 0, "index: every query equals brute force");
	tap_ok(y.queries > 50000, "index: %zu queries over %d operations (%zu hits)", y.queries, OPS, y.k_total);
	tap_is_int(y.order_bad, 0, "index: results in ascending start order");
	tap_is_int(y.checks_bad, 0, "index: AVL balance and subtree max invariants held throughout");
	tap_ok(mmn__itree_height(&t) <= (int)(1.45 * log2((double)y.nin + 2)) + 1,
	       "index: height %d for %zu nodes", mmn__itree_height(&t), y.nin);
	mmn__itree_query(&t, 0, UINT64_MAX, stop_at_first, &hits);
	tap_is_int(hits, y.nin ? 1 : 0, "index: a non-zero visit return stops the walk");
	test_edges();
	/* Drain the big tree; it must end empty and valid. */
	for (size_t i = 0; i < N; i++)
		if (items[i].in)
			mmn__itree_remove(&t, &items[i].node);
	tap_ok(t.root == NULL && t.count == 0 && mmn__itree_check(&t) == 0,
	       "index: emptied after removing all");
	return tap_done();
}
