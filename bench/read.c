/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/read: the cost of mmn_read_begin() + mmn_read_retry() on a quiescent
 * subscription, the pair a driver wraps around every mirror fill.
 *
 *   read MMND [--rounds=N]
 *
 * A fresh mmnd (uffd source) and one client subscribed to a page of its own
 * memory.  Each round times LOOP iterations of:
 *   pair      seq = mmn_read_begin(s); mmn_read_retry(s, seq)  (the inline
 *             readers of mmn.h, MMN_SEQ_ABI 2: retry is two loads and a
 *             compare);
 *   floor     one acquire load of the subscription's slot word, what the
 *             kernel's mmu_interval_read_retry() costs;
 *   exported  the same pair through the exported functions of MMN_1.0
 *             (what programs built against an older mmn.h call; ABI 1).
 * Printed: median, p99 and max ns per iteration over the rounds, and the
 * ratio of each median to the floor's, measured in the same run on one
 * thread.  The machine is shared and noisy: read the ratios.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "mmnd-run.h"
#include "samples.h"

#define LOOP 4096


typedef uint64_t (*begin_fn)(struct mmn_sub *);
typedef bool (*retry_fn)(struct mmn_sub *, uint64_t);


/* ns per begin+retry pair; *collisions counts retries that reported one (none expected). */
__attribute__((noinline)) static double time_pairs(struct mmn_sub *s, unsigned *collisions)
{
	uint64_t t0 = samples_now_ns();
	unsigned bad = 0;

	for (int i = 0; i < LOOP; i++) {
		uint64_t seq = mmn_read_begin(s);

		bad += mmn_read_retry(s, seq);
	}
	*collisions += bad;
	return (double)(samples_now_ns() - t0) / LOOP;
}

/* ns per acquire load of @word. */
__attribute__((noinline)) static double time_loads(const uint64_t *word, uint64_t *sink)
{
	uint64_t t0 = samples_now_ns(), sum = 0;

	for (int i = 0; i < LOOP; i++)
		sum += __atomic_load_n(word, __ATOMIC_ACQUIRE);
	*sink += sum;
	return (double)(samples_now_ns() - t0) / LOOP;
}

/* ns per pair through the exported functions. */
__attribute__((noinline)) static double time_exported(struct mmn_sub *s, begin_fn begin, retry_fn retry,
						      unsigned *collisions)
{
	uint64_t t0 = samples_now_ns();
	unsigned bad = 0;

	for (int i = 0; i < LOOP; i++)
		bad += retry(s, begin(s));
	*collisions += bad;
	return (double)(samples_now_ns() - t0) / LOOP;
}

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	(void)s, (void)r, (void)ud;
	return 0;
}

/* The three series, interleaved round by round so that they share the noise. */
static int measure(struct mmn_sub *s, int rounds, struct samples out[3])
{
	double *v = calloc(3 * (size_t)rounds, sizeof(*v));
	begin_fn begin = (begin_fn)dlsym(RTLD_DEFAULT, "mmn_read_begin");
	retry_fn retry = (retry_fn)dlsym(RTLD_DEFAULT, "mmn_read_retry");
	const uint64_t *word = ((const struct mmn_sub_seq *)(void *)s)->word;
	unsigned collisions = 0;
	uint64_t sink = 0;

	if (!v)
		return -ENOMEM;
	if (!begin || !retry) {
		free(v);
		return -ENOENT;
	}
	for (int i = 0; i < rounds; i++) {
		v[i] = time_pairs(s, &collisions);
		v[rounds + i] = time_loads(word, &sink);
		v[2 * rounds + i] = time_exported(s, begin, retry, &collisions);
	}
	for (int k = 0; k < 3; k++)
		out[k] = samples_of(v + (size_t)k * rounds, (size_t)rounds);
	free(v);
	if (collisions)
		fprintf(stderr, "read: %u retries reported a collision on a quiescent subscription\n",
			collisions);
	return collisions || !sink ? -EIO : 0;
}

static int run(const char *mmnd, int rounds, struct samples out[3])
{
	const char *args[] = {"--source=uffd", "--log-level=warning", NULL};
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_inval};
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct mmnd_run m = {0};
	struct mmn_client *c = NULL;
	struct mmn_sub *s = NULL;
	int r = page == MAP_FAILED ? -ENOMEM : mmnd_run_init(&m, mmnd);

	if (!r)
		r = mmnd_run_start(&m, args, 20000);
	if (!r)
		r = mmn_connect(m.sock, &c);
	if (!r)
		r = mmn_start_thread(c);
	if (!r) {
		page[0] = 1;
		r = mmn_subscribe(c, 0, (uintptr_t)page, 4096, &o, &s);
	}
	if (!r)
		r = measure(s, rounds, out);
	if (s)
		mmn_unsubscribe(s);
	mmn_disconnect(c);
	mmnd_run_fini(&m);
	if (page != MAP_FAILED)
		munmap(page, 4096);
	return r;
}

static void print(const char *what, const struct samples *st, const struct samples *floor)
{
	printf("%-9s median %6.2f p99 %6.2f max %7.2f ns: x%.2f of the floor\n", what, st->median, st->p99,
	       st->max, st->median / floor->median);
}

int main(int argc, char **argv)
{
	int rounds = getenv("MMN_BENCH_ROUNDS") ? atoi(getenv("MMN_BENCH_ROUNDS")) : 2000;
	struct samples st[3];
	char load[64];
	int r;

	samples_load(load, sizeof(load));
	if (argc == 3 && !strncmp(argv[2], "--rounds=", 9))
		rounds = atoi(argv[2] + 9);
	if (argc < 2 || argc > 3 || rounds < 100) {
		fprintf(stderr, "usage: %s MMND [--rounds=N (>= 100)]\n", argv[0]);
		return 2;
	}
	r = run(argv[1], rounds, st);
	if (r < 0) {
		fprintf(stderr, "read: %s\n", strerror(-r));
		return 1;
	}
	printf("read: %d rounds of %d iterations, one thread, load %s\n", rounds, LOOP, load);
	print("floor", &st[1], &st[1]);
	print("pair", &st[0], &st[1]);
	print("exported", &st[2], &st[1]);
	printf("pair/floor x%.2f (acceptance: <= 4)\n", st[0].median / st[1].median);
	return 0;
}
