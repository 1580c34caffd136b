/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Timing samples for the benchmarks (see samples.h). */
#include "samples.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t samples_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Index of the p99 sample of @n sorted ones. */
static size_t p99_index(size_t n)
{
	size_t i = (n * 99) / 100;

	return i < n ? i : n - 1;
}

struct samples samples_of_ns(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return (struct samples){
		.median = (double)v[n / 2] / 1e3,
		.p99 = (double)v[p99_index(n)] / 1e3,
		.max = (double)v[n - 1] / 1e3,
	};
}

struct samples samples_of(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return (struct samples){.median = v[n / 2], .p99 = v[p99_index(n)], .max = v[n - 1]};
}

void samples_load(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "r");

	snprintf(buf, len, "?");
	if (f) {
		if (!fgets(buf, (int)len, f))
			snprintf(buf, len, "?");
		buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}
