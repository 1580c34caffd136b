/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * daemon/engine/idmap.c against a brute-force model: random adds, deletes
 * and lookups of sequential and scattered ids, growth from the single
 * bucket, a reserve that makes adding allocation-free, and the load factor.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "engine/idmap.h"
#include "lib/prng.h"
#include "tap.h"

#define N 100000

static struct idmap_node nodes[N];
static bool linked[N];

/* Every node is found exactly when linked, and nothing else is. */
static int check_all(const struct idmap *m)
{
	int bad = 0;

	for (int i = 0; i < N; i++) {
		struct idmap_node *f = mmn__idmap_find(m, nodes[i].id);

		bad += linked[i] ? f != &nodes[i] : f != NULL;
	}
	return bad;
}

static void test_random(void)
{
	struct idmap m = {0};
	uint64_t rng = 0x9e3779b97f4a7c15u;
	size_t count = 0, max_chain_ok = 1;
	int bad = 0;

	for (int i = 0; i < N; i++)
		nodes[i].id = i % 2 ? (uint64_t)i + 1 : prng_next(&rng) | 1u << 20; /* sequential and scattered */
	tap_ok(mmn__idmap_find(&m, 1) == NULL, "empty map: nothing found");
	for (int step = 0; step < 4 * N; step++) {
		int i = (int)(prng_next(&rng) % N);

		if (!linked[i]) {
			mmn__idmap_add(&m, &nodes[i]);
			linked[i] = true;
			count++;
		} else if (prng_next(&rng) % 3 == 0) {
			mmn__idmap_del(&m, &nodes[i]);
			linked[i] = false;
			count--;
		}
		if (step % (N / 2) == 0)
			bad += check_all(&m);
		max_chain_ok &= m.count <= m.mask + 1; /* load factor at most 1 */
	}
	bad += check_all(&m);
	tap_is_int(bad, 0, "random adds and deletes: every lookup matches the model");
	tap_ok(m.count == count, "count follows (%zu)", count);
	tap_ok(max_chain_ok, "the bucket array grew with the count (load at most 1, %zu buckets)", m.mask + 1);
	for (int i = 0; i < N; i++)
		if (linked[i])
			mmn__idmap_del(&m, &nodes[i]), linked[i] = false;
	tap_ok(m.count == 0 && check_all(&m) == 0, "all deleted: nothing found");
	mmn__idmap_free(&m);
}

static void test_reserve(void)
{
	struct idmap m = {0};
	struct idmap_node **before;

	tap_is_int(mmn__idmap_reserve(&m, 1000), 0, "reserve 1000");
	before = m.buckets;
	for (int i = 0; i < 1000; i++) {
		nodes[i].id = (uint64_t)i;
		mmn__idmap_add(&m, &nodes[i]);
	}
	tap_ok(m.buckets == before, "1000 adds after the reserve did not reallocate");
	tap_ok(mmn__idmap_find(&m, 999) == &nodes[999] && mmn__idmap_find(&m, 1000) == NULL, "lookups");
	mmn__idmap_free(&m);
}

int main(void)
{
	test_random();
	test_reserve();
	return tap_done();
}
