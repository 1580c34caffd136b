/* SPDX-License-Identifier: GPL-2.0-or-later */
/* daemon/hist.c: the log2 microsecond buckets, their edges and the sum. */
#include <stdint.h>

#include "hist.h"
#include "tap.h"

static void test_edges(void)
{
	tap_is_int(mmn__hist_index(0), 0, "0 ns: the first bucket");
	tap_is_int(mmn__hist_index(1000), 0, "1 µs: still the first bucket (≤ 1 µs)");
	tap_is_int(mmn__hist_index(1001), 1, "1.001 µs: the ≤ 2 µs bucket");
	tap_is_int(mmn__hist_index(2000), 1, "2 µs: the ≤ 2 µs bucket");
	tap_is_int(mmn__hist_index(2001), 2, "2.001 µs: the ≤ 4 µs bucket");
	tap_is_int(mmn__hist_index(3000), 2, "3 µs: the ≤ 4 µs bucket");
	tap_is_int(mmn__hist_index(4000), 2, "4 µs: the ≤ 4 µs bucket");
	tap_is_int(mmn__hist_index(4001), 3, "4.001 µs: the ≤ 8 µs bucket");
	for (unsigned i = 1; i < MMN_HIST_BUCKETS - 1; i++) {
		uint64_t b = mmn__hist_bound_ns(i);

		if (mmn__hist_index(b) != i || mmn__hist_index(b + 1) != i + 1 ||
		    mmn__hist_index(mmn__hist_bound_ns(i - 1) + 1) != i) {
			tap_ok(0, "bucket %u holds (%" PRIu64 ", %" PRIu64 "] ns", i,
			       mmn__hist_bound_ns(i - 1), b);
			return;
		}
	}
	tap_ok(1, "every bucket i holds (bound(i-1), bound(i)] ns");
	tap_is_u64(mmn__hist_bound_ns(23), 8388608000ull, "bucket 23 ends at 8.388608 s");
	tap_is_int(mmn__hist_index(8388608000ull), 23, "8.388608 s: the last bounded bucket");
	tap_is_int(mmn__hist_index(8388608001ull), MMN_HIST_BUCKETS - 1, "longer: the unbounded bucket");
	tap_is_int(mmn__hist_index(UINT64_MAX), MMN_HIST_BUCKETS - 1, "UINT64_MAX ns: the unbounded bucket");
	tap_is_u64(mmn__hist_bound_ns(MMN_HIST_BUCKETS - 1), UINT64_MAX, "the last bound is UINT64_MAX");
	tap_is_u64(mmn__hist_bound_ns(1000), UINT64_MAX, "an index past the end: unbounded, no overflow");
}

static void test_add(void)
{
	struct mmn_hist h = {0};
	uint64_t n = 0;

	mmn__hist_add(&h, 500);
	mmn__hist_add(&h, 1500);
	mmn__hist_add(&h, 1500);
	mmn__hist_add(&h, 10000000000ull);
	for (unsigned i = 0; i < MMN_HIST_BUCKETS; i++)
		n += h.bucket[i];
	tap_is_u64(n, 4, "add: four latencies counted");
	tap_is_u64(h.bucket[0], 1, "add: 500 ns in bucket 0");
	tap_is_u64(h.bucket[1], 2, "add: 1.5 µs twice in bucket 1");
	tap_is_u64(h.bucket[MMN_HIST_BUCKETS - 1], 1, "add: 10 s in the unbounded bucket");
	tap_is_u64(h.sum_ns, 10000003500ull, "add: the sum is exact");
}

int main(void)
{
	test_edges();
	test_add();
	return tap_done();
}
