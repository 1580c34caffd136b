/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Timing samples for the benchmarks (bench/): a monotonic clock in ns and
 * the median, p99 and max of a set of samples.
 */
#ifndef MMN_TESTS_SAMPLES_H
#define MMN_TESTS_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

struct samples {
	double median, p99, max;
};

/* CLOCK_MONOTONIC in ns. */
uint64_t samples_now_ns(void);
/* Median, p99 and max of @n (> 0) samples in ns, in µs; sorts @v. */
struct samples samples_of_ns(uint64_t *v, size_t n);
/* Median, p99 and max of @n (> 0) samples, in their own unit; sorts @v. */
struct samples samples_of(double *v, size_t n);
/* The machine's load (the line of /proc/loadavg, "?" if unreadable) into @buf. */
void samples_load(char *buf, size_t len);

#endif
