/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One client's blocking-ack latency histogram as GetClientHistograms
 * returns it (man org.mmn.Broker1(5)): buckets of (upper bound in ns,
 * count in that bucket alone) in increasing order of bound, the last bound
 * UINT64_MAX (unbounded), the sum of the latencies and the deadline misses.
 * Estimates of quantiles from it.  No allocation: @name points into the
 * D-Bus reply, which outlives the struct.
 */
#ifndef MMN_TOOLS_HIST_H
#define MMN_TOOLS_HIST_H

#include <stdint.h>

#define HIST_MAX_BUCKETS 64

struct client_hist {
	uint64_t id;
	uint32_t pid, uid;
	const char *name;
	unsigned nbuckets;
	uint64_t bound_ns[HIST_MAX_BUCKETS];
	uint64_t count[HIST_MAX_BUCKETS];
	uint64_t sum_ns;
	uint64_t misses;
};

/* Latencies counted: the sum of the buckets. */
uint64_t hist_count(const struct client_hist *h);
/*
 * The @q quantile (0 < q ≤ 1) in ns, interpolated linearly inside the
 * bucket it falls in (from the previous bound, 0 for the first); in the
 * unbounded last bucket, the last finite bound.  0 when nothing is counted.
 */
uint64_t hist_quantile_ns(const struct client_hist *h, double q);

#endif
