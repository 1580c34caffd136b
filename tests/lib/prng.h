/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Seeded PRNGs for reproducible tests: splitmix64 for the fault campaigns (a
 * test prints its seed, and the same seed replays the same choices), and
 * xorshift64* for the property tests with fixed seeds.  Header only.
 */
#ifndef MMN_TESTS_PRNG_H
#define MMN_TESTS_PRNG_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t prng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* xorshift64*: the next number from @state (never 0). */
static inline uint64_t prng_xorshift(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) (n > 0; the modulo bias is irrelevant here). */
static inline uint64_t prng_below(uint64_t *state, uint64_t n)
{
	return prng_next(state) % n;
}

/* The seed: $MMN_TEST_SEED when set (to replay a run), else from the clock and pid. */
static inline uint64_t prng_seed(void)
{
	const char *env = getenv("MMN_TEST_SEED");
	struct timespec ts;

	if (env && *env)
		return strtoull(env, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
}

#endif
