/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tools/hist.c: counts and quantile estimates from GetClientHistograms buckets. */
#include <stdint.h>

#include "hist.h"
#include "tap.h"

int main(void)
{
	struct client_hist h = {
		.nbuckets = 4,
		.bound_ns = {1000, 2000, 4000, UINT64_MAX},
		.count = {0, 0, 0, 0},
	};

	tap_is_u64(hist_count(&h), 0, "empty: count 0");
	tap_is_u64(hist_quantile_ns(&h, 0.5), 0, "empty: quantile 0");
	h.count[1] = 10; /* ten samples in (1, 2] µs */
	tap_is_u64(hist_count(&h), 10, "count sums the buckets");
	tap_is_u64(hist_quantile_ns(&h, 0.5), 1500, "p50 of ten in (1000, 2000]: halfway, 1500 ns");
	tap_is_u64(hist_quantile_ns(&h, 0.99), 2000, "p99: the bucket's bound");
	tap_is_u64(hist_quantile_ns(&h, 0.1), 1100, "p10: the first tenth of the bucket");
	h.count[0] = 90;
	tap_is_u64(hist_quantile_ns(&h, 0.5), 555,
		   "p50 of 90 in [0, 1000] and 10 above: in the first bucket");
	tap_is_u64(hist_quantile_ns(&h, 0.99), 1900, "p99: the ninth tenth of (1000, 2000]");
	h.count[3] = 900;
	tap_is_u64(hist_quantile_ns(&h, 0.99), 4000, "in the unbounded bucket: its lower bound");
	h.count[0] = 1;
	h.count[1] = h.count[3] = 0;
	tap_is_u64(hist_quantile_ns(&h, 0.99), 1000, "one sample of ≤ 1 µs: p99 is its bucket's bound");
	return tap_done();
}
