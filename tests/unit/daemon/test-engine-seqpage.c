/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * daemon/engine/seqpage.c: a slot end wakes readers.  With the waiter page
 * (Hello.waiter_flag) only a flagged slot is woken, so an event nobody
 * waits for costs no FUTEX_WAKE; a reader that raised its flag is still
 * woken, through the client's own mappings of the two memfds.  Without it
 * (an older client) every end wakes, as before.  Gens start at
 * Hello.gen_base and never wrap.
 */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clients/client.h"
#include "engine/seqpage-slots.h"
#include "seqpage.h"
#include "tap.h"

#define NSLOTS 8

/* A reader as libmmn's slot_wait(): flag, fence, look again, FUTEX_WAIT. */
struct reader {
	const struct mmn_seqpage *page; /* the client's read-only mapping */
	uint8_t *flags;			/* the client's read-write mapping of the waiter page */
	uint32_t slot;
	int done[2];
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	const uint32_t *seq = &r->page->slots[r->slot].seq;
	uint32_t v;

	while ((v = __atomic_load_n(seq, __ATOMIC_ACQUIRE)) & 1) {
		__atomic_store_n(&r->flags[r->slot], 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(seq, __ATOMIC_RELAXED) != v)
			continue;
		syscall(SYS_futex, seq, FUTEX_WAIT, v, NULL, NULL, 0);
	}
	if (write(r->done[1], "x", 1) != 1)
		abort();
	return NULL;
}

/* An older client: every end and every free wakes. */
static void test_without_flags(void)
{
	struct client *c = calloc(1, sizeof(*c));
	unsigned long w0;
	uint32_t slot, gen;

	tap_require(c && mmn__seqpage_create(c, NSLOTS, false, 0) == 0);
	tap_ok(c->waiters == NULL, "no waiter_flag: no waiter page");
	tap_require(mmn__seqpage_alloc(c, &slot, &gen) == 0);
	w0 = mmn__seqpage_wakes;
	mmn__seqpage_begin(c, slot);
	mmn__seqpage_end(c, slot);
	tap_is_int(mmn__seqpage_wakes - w0, 1, "no waiter_flag: an end wakes though nobody waits");
	mmn__seqpage_free(c, slot);
	tap_is_int(mmn__seqpage_wakes - w0, 2, "and so does a free");
	mmn__seqpage_destroy(c);
	free(c);
}

/* The client's views of both memfds, as libmmn maps them. */
static void client_maps(struct client *c, const struct mmn_seqpage **page, uint8_t **flags)
{
	*page = mmap(NULL, c->page_size, PROT_READ, MAP_SHARED, c->memfd, 0);
	*flags = mmap(NULL, c->waiters_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->wait_memfd, 0);
	tap_require(*page != MAP_FAILED && *flags != MAP_FAILED);
	tap_ok(mmap(NULL, c->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0) == MAP_FAILED,
	       "the sequence page stays read-only for the client");
}

/* Wait (bounded) until the reader's flag shows in mmnd's view. */
static bool flag_raised(struct client *c, uint32_t slot)
{
	for (int i = 0; i < 5000000 && !__atomic_load_n(&c->waiters[slot], __ATOMIC_ACQUIRE); i++)
		sched_yield();
	return __atomic_load_n(&c->waiters[slot], __ATOMIC_ACQUIRE);
}

static void test_with_flags(void)
{
	struct client *c = calloc(1, sizeof(*c));
	struct reader r = {0};
	struct pollfd pf;
	unsigned long w0;
	uint32_t gen;
	pthread_t th;

	tap_require(c && mmn__seqpage_create(c, NSLOTS, true, 0) == 0);
	tap_ok(c->waiters && c->wait_memfd >= 0 && c->waiters_size >= NSLOTS, "waiter_flag: a waiter page");
	client_maps(c, &r.page, &r.flags);
	tap_require(mmn__seqpage_alloc(c, &r.slot, &gen) == 0 && pipe(r.done) == 0);

	w0 = mmn__seqpage_wakes;
	for (int i = 0; i < 100; i++) {
		mmn__seqpage_begin(c, r.slot);
		mmn__seqpage_end(c, r.slot);
	}
	tap_is_int(mmn__seqpage_wakes - w0, 0, "100 events nobody waited for: no FUTEX_WAKE");

	mmn__seqpage_begin(c, r.slot);
	tap_require(pthread_create(&th, NULL, reader_main, &r) == 0);
	tap_ok(flag_raised(c, r.slot), "a reader of the odd slot raised its flag");
	pf = (struct pollfd){.fd = r.done[0], .events = POLLIN};
	mmn__seqpage_end(c, r.slot);
	tap_is_int(mmn__seqpage_wakes - w0, 1, "the end of a flagged slot wakes");
	tap_is_int(poll(&pf, 1, 10000), 1, "and the reader returns");
	pthread_join(th, NULL);
	tap_is_int(c->waiters[r.slot], 0, "mmnd cleared the flag");
	mmn__seqpage_begin(c, r.slot);
	mmn__seqpage_end(c, r.slot);
	tap_is_int(mmn__seqpage_wakes - w0, 1, "the next event, unwatched, does not wake");

	mmn__seqpage_free(c, r.slot);
	tap_is_int(mmn__seqpage_wakes - w0, 1, "a free nobody waits for does not wake");
	close(r.done[0]);
	close(r.done[1]);
	munmap((void *)r.page, c->page_size);
	munmap(r.flags, c->waiters_size);
	mmn__seqpage_destroy(c);
	free(c);
}

/* Gens start at the client's base and end at 2^32 - 1: never a value the client saw. */
static void test_gen_base(void)
{
	struct client *c = calloc(1, sizeof(*c));
	uint32_t slot, slot2, gen;

	tap_require(c);
	tap_is_int(mmn__seqpage_create(c, NSLOTS, false, (uint64_t)UINT32_MAX + 2), -EINVAL,
		   "gen_base above 2^32: -EINVAL");
	tap_require(mmn__seqpage_create(c, NSLOTS, false, 1000) == 0);
	tap_ok(mmn__seqpage_alloc(c, &slot, &gen) == 0 && gen == 1000, "the first gen is gen_base");
	mmn__seqpage_free(c, slot);
	tap_ok(mmn__seqpage_alloc(c, &slot, &gen) == 0 && gen == 1001, "the next one above it");
	mmn__seqpage_destroy(c);

	tap_require(mmn__seqpage_create(c, NSLOTS, false, UINT32_MAX) == 0);
	tap_ok(mmn__seqpage_alloc(c, &slot, &gen) == 0 && gen == UINT32_MAX, "gen_base 2^32 - 1: one gen left");
	tap_is_int(mmn__seqpage_alloc(c, &slot2, &gen), -ERANGE, "then -ERANGE, no wrap to 1");
	mmn__seqpage_free(c, slot);
	tap_is_int(mmn__seqpage_alloc(c, &slot2, &gen), -ERANGE, "also with a free slot");
	mmn__seqpage_destroy(c);

	tap_require(mmn__seqpage_create(c, NSLOTS, false, (uint64_t)UINT32_MAX + 1) == 0);
	tap_is_int(mmn__seqpage_alloc(c, &slot, &gen), -ERANGE, "gen_base 2^32: no gen at all");
	mmn__seqpage_destroy(c);

	tap_require(mmn__seqpage_create(c, NSLOTS, false, 0) == 0);
	tap_ok(mmn__seqpage_alloc(c, &slot, &gen) == 0 && gen == 1, "no gen_base (older client): gens from 1");
	mmn__seqpage_destroy(c);
	free(c);
}

int main(void)
{
	test_without_flags();
	test_with_flags();
	test_gen_base();
	return tap_done();
}
