/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnctl stats --format=openmetrics: the OpenMetrics text format (which
 * Prometheus reads) of mmnd's counters and the clients' ack-latency
 * histograms.  Families: mmn_<key in snake case> for each GetStats key
 * (gauges for the current counts, counters for the rest, "unknown" for a
 * key this mmnctl does not know), mmn_ack_latency_seconds (histogram) and
 * mmn_deadline_misses (counter), labelled client (the Hello name), id and
 * pid.  Ends with "# EOF".
 */
#ifndef MMN_TOOLS_OPENMETRICS_H
#define MMN_TOOLS_OPENMETRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"

struct om_stat {
	const char *key; /* a GetStats key, e.g. "BlockingAcks" */
	uint64_t value;
};

/* Write the exposition to @f; 0, or -EIO when @f reports a write error. */
int om_write(FILE *f, const struct om_stat *stats, size_t nstats, const struct client_hist *clients,
	     size_t nclients);

#endif
