/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by the files of client-lib/. */
#ifndef MMN_CLIENT_UTIL_H
#define MMN_CLIENT_UTIL_H

#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* CLOCK_MONOTONIC in milliseconds, for the deadlines of blocking waits. */
static inline int64_t mmn__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
