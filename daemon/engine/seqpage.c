/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The per-client sequence page (proto/seqpage.h): a sealed memfd mmnd maps
 * read-write and the client maps read-only.  mmnd is the only writer and
 * writes each slot as one 64-bit word with release semantics; every odd ->
 * even transition is followed by a shared FUTEX_WAKE, for a client that
 * negotiated the waiter page only when the slot's waiter flag is set
 * (proto/seqpage.h states the protocol and why no wake-up is lost).
 */

#include "engine/seqpage-slots.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clients/client.h"
#include "engine/memfd.h"
#include "seqpage.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static void slot_store(struct mmn_seqpage_slot *s, uint32_t seq, uint32_t gen)
{
	uint64_t v = (uint64_t)gen << 32 | seq;

	__atomic_store_n((uint64_t *)(void *)s, v, __ATOMIC_RELEASE);
}

unsigned long mmn__seqpage_wakes;

/* After a store that may end a wait on @slot (the store is before the fence). */
static void slot_wake(struct client *c, uint32_t slot)
{
	if (c->waiters) {
		/* Dekker: the slot store, then the flag load (proto/seqpage.h). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&c->waiters[slot], __ATOMIC_RELAXED))
			return;
		__atomic_store_n(&c->waiters[slot], 0, __ATOMIC_RELAXED);
	}
	mmn__seqpage_wakes++;
	/* Shared futex: the waiters are in other processes. */
	syscall(SYS_futex, &c->page->slots[slot].seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int mmn__seqpage_create(struct client *c, uint32_t nslots, bool waiter_flag, uint64_t gen_base)
{
	size_t size = MMN_SEQPAGE_SIZE(nslots), wsize = MMN_WAITPAGE_SIZE(nslots);
	void *p, *w = NULL;
	int fd, wfd = -1;

	if (gen_base > (uint64_t)UINT32_MAX + 1)
		return -EINVAL;
	/* Our mapping stays writable; the client can only map it read-only. */
	fd = mmn__memfd_map("mmn-seqpage", size,
			    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL, &p);
	if (fd < 0)
		return fd;
	/* The client writes its flags: only the size is sealed (a shrink would fault us). */
	if (waiter_flag) {
		wfd = mmn__memfd_map("mmn-waiters", wsize, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, &w);
		if (wfd < 0) {
			munmap(p, size);
			close(fd);
			return wfd;
		}
	}
	/* Slots are handed out lazily (low ones first): nothing per slot until used. */
	c->free_slots = NULL;
	c->nfree = c->nused = c->free_cap = 0;
	c->nslots = nslots;
	c->page = p;
	c->page_size = size;
	c->memfd = fd;
	c->waiters = w;
	c->waiters_size = w ? wsize : 0;
	c->wait_memfd = wfd;
	/* c->gen is the last gen given: base 2^32 leaves none (alloc fails). */
	c->gen = gen_base ? (uint32_t)(gen_base - 1) : 0;
	c->page->magic = MMN_SEQPAGE_MAGIC;
	c->page->version = MMN_SEQPAGE_VERSION;
	c->page->nslots = nslots;
	return 0;
}

void mmn__seqpage_destroy(struct client *c)
{
	if (c->page)
		munmap(c->page, c->page_size);
	if (c->memfd >= 0)
		close(c->memfd);
	if (c->waiters) {
		munmap(c->waiters, c->waiters_size);
		if (c->wait_memfd >= 0)
			close(c->wait_memfd);
	}
	free(c->free_slots);
	c->waiters = NULL;
	c->wait_memfd = -1;
	c->page = NULL;
	c->memfd = -1;
	c->free_slots = NULL;
	c->nfree = c->nslots = c->nused = c->free_cap = 0;
}

/* A slot never handed out yet, with room to stack it when it is freed.  0 or -ENOMEM/-ENOSPC. */
static int slot_fresh(struct client *c, uint32_t *slot)
{
	if (c->nused == c->nslots)
		return -ENOSPC;
	if (c->nused == c->free_cap) {
		uint32_t cap = c->free_cap ? c->free_cap * 2 : 64;
		uint32_t *v;

		if (cap > c->nslots)
			cap = c->nslots;
		v = reallocarray(c->free_slots, cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->free_slots = v;
		c->free_cap = cap;
	}
	*slot = c->nused++;
	return 0;
}

int mmn__seqpage_alloc(struct client *c, uint32_t *slot, uint32_t *gen)
{
	struct mmn_seqpage_slot *s;
	int r;

	/* Never wrap: the client may hold values of every gen below (Hello.gen_base). */
	if (c->gen == UINT32_MAX)
		return -ERANGE;
	if (c->nfree) {
		*slot = c->free_slots[--c->nfree];
	} else {
		r = slot_fresh(c, slot);
		if (r < 0)
			return r;
	}
	*gen = ++c->gen;
	s = &c->page->slots[*slot];
	/* Keep seq monotonic across owners: a stale reader always sees a change. */
	slot_store(s, s->seq + (s->seq & 1), *gen);
	return 0;
}

void mmn__seqpage_free(struct client *c, uint32_t slot)
{
	struct mmn_seqpage_slot *s = &c->page->slots[slot];

	slot_store(s, s->seq + (s->seq & 1), 0);
	slot_wake(c, slot);
	/* Room is there: free_cap >= nused > nfree (slot_fresh). */
	c->free_slots[c->nfree++] = slot;
}

uint64_t mmn__seqpage_begin(struct client *c, uint32_t slot)
{
	struct mmn_seqpage_slot *s = &c->page->slots[slot];

	slot_store(s, s->seq + 1, s->gen);
	return mmn_seqpage_load(s);
}

uint64_t mmn__seqpage_end(struct client *c, uint32_t slot)
{
	struct mmn_seqpage_slot *s = &c->page->slots[slot];

	slot_store(s, s->seq + 1, s->gen);
	slot_wake(c, slot);
	return mmn_seqpage_load(s);
}

uint64_t mmn__seqpage_value(struct client *c, uint32_t slot)
{
	return mmn_seqpage_load(&c->page->slots[slot]);
}
