/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "hist.h"

unsigned mmn__hist_index(uint64_t ns)
{
	/* ns ≤ 1000·2^i exactly when ⌈ns/1000⌉ ≤ 2^i: the bucket of ⌈ns/1000⌉ µs. */
	uint64_t us = ns / 1000 + (ns % 1000 != 0);
	unsigned i;

	if (us <= 1)
		return 0;
	i = 64 - (unsigned)__builtin_clzll(us - 1);
	return i < MMN_HIST_BUCKETS - 1 ? i : MMN_HIST_BUCKETS - 1;
}

uint64_t mmn__hist_bound_ns(unsigned i)
{
	if (i >= MMN_HIST_BUCKETS - 1)
		return UINT64_MAX;
	return 1000ull << i;
}

void mmn__hist_add(struct mmn_hist *h, uint64_t ns)
{
	h->bucket[mmn__hist_index(ns)]++;
	h->sum_ns += ns;
}
