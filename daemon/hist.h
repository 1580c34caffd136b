/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A latency histogram: fixed log2 buckets in microseconds.  Bucket i
 * (i < MMN_HIST_BUCKETS - 1) counts latencies of at most 2^i µs that no
 * lower bucket counts: bucket 0 is ≤ 1 µs, bucket 23 is ≤ 8.388608 s, the
 * last counts everything longer.  Plain counters: the owner's lock (for
 * mmnd, the loop thread) covers them.
 */
#ifndef MMN_DAEMON_HIST_H
#define MMN_DAEMON_HIST_H

#include <stdint.h>

#define MMN_HIST_BUCKETS 25

struct mmn_hist {
	uint64_t bucket[MMN_HIST_BUCKETS];
	uint64_t sum_ns; /* of every latency counted; wraps after 584 years */
};

/* The bucket of a latency of @ns nanoseconds. */
unsigned mmn__hist_index(uint64_t ns);
/* Bucket @i's upper bound in nanoseconds (inclusive); UINT64_MAX for the last. */
uint64_t mmn__hist_bound_ns(unsigned i);
/* Count one latency of @ns nanoseconds. */
void mmn__hist_add(struct mmn_hist *h, uint64_t ns);

#endif
