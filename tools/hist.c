/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "hist.h"

uint64_t hist_count(const struct client_hist *h)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < h->nbuckets; i++)
		n += h->count[i];
	return n;
}

uint64_t hist_quantile_ns(const struct client_hist *h, double q)
{
	uint64_t n = hist_count(h), seen = 0, lo = 0;
	double rank;

	if (!n)
		return 0;
	/* The rank of the sample sought, 1-based: the ⌈q·n⌉th smallest. */
	rank = (double)(uint64_t)(q * (double)n);
	if (rank < q * (double)n)
		rank += 1;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < h->nbuckets; i++) {
		uint64_t hi = h->bound_ns[i];

		if (h->count[i] && (double)(seen + h->count[i]) >= rank) {
			if (hi == UINT64_MAX)
				return lo;
			return lo +
			       (uint64_t)((double)(hi - lo) * ((rank - (double)seen) / (double)h->count[i]));
		}
		seen += h->count[i];
		if (hi != UINT64_MAX)
			lo = hi;
	}
	return lo;
}
