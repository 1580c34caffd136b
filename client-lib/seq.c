/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shared sequence page and mmn_read_begin/mmn_read_retry.
 *
 * mmnd writes each subscription's slot (proto/seqpage.h).  Readers find it
 * through the sub's first bytes, struct mmn_sub_seq of mmn.h, whose
 * invariants mmn.h states and this file keeps: seq.word points to the slot
 * only while the sub is attached to a live slot, else to `parked` (odd);
 * seq.cookie = gen << 32 | epoch.  Every sub also has an epoch in library
 * memory, a futex word, odd while the sub is not attached (disconnected,
 * RESYNC being delivered, released) and bumped at every attachment.
 *
 * Two formats of value: ABI 2 (mmn_read_begin_slow2, the inline readers of
 * today's mmn.h) returns the slot word itself, exact because a client's
 * gens never repeat: c->gen_max, the highest gen ever published, goes to
 * mmnd as Hello.gen_base - 1 (conn.c) and session.c releases every sub on a
 * reconnection to an mmnd that does not honour it.  ABI 1
 * (mmn_read_begin_slow@MMN_1.2 and the exported functions of MMN_1.0)
 * returns (epoch << 32) | slot.seq and checks the epoch against the
 * cookie, so a value taken before a reconnection never matches one after
 * it by the epoch alone.  The inline readers handle the quiescent case;
 * the slow paths here the rest.
 *
 * Readers never see an unmapped page: on connection loss every sub is
 * parked, then the page is replaced in place (MAP_FIXED) by an anonymous
 * placeholder, and regions are unmapped only by mmn_disconnect().  A reader
 * that still holds the old slot address reads the placeholder (gen 0: no
 * match) or the next connection's page, whose mapping a syscall made after
 * the park, so its next load of seq.word sees the park.  A reader sleeping on
 * the old slot is woken through a second mapping of the old memfd (a shared
 * futex is keyed by the file page).
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "error.h"
#include "fork.h"
#include "mmn/mmn.h"
#include "seq.h"
#include "sub.h"
#include "util.h"

#define MMN_MAX_SLOTS (1u << 20) /* the most a sequence page may have */

static long futex(const uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static size_t page_round(size_t n)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	return (n + ps - 1) & ~(ps - 1);
}

const struct mmn_seqpage_slot *mmn__seqpage_slot(struct mmn_client *c, uint32_t idx)
{
	const struct mmn_seqpage *sp = c->sp_addr;

	if (!sp || idx >= c->nslots)
		return NULL;
	return &sp->slots[idx];
}

static void retire(struct mmn_client *c)
{
	if (c->nretired == ARRAY_SIZE(c->retired)) {
		/* Very unlikely (the page grew 16 times): the oldest goes. */
		munmap(c->retired[0].addr, c->retired[0].len);
		for (unsigned i = 1; i < c->nretired; i++)
			c->retired[i - 1] = c->retired[i];
		c->nretired--;
	}
	c->retired[c->nretired].addr = c->sp_addr;
	c->retired[c->nretired].len = c->sp_len;
	c->nretired++;
	c->sp_addr = NULL;
	c->sp_len = 0;
}

int mmn__seqpage_map(struct mmn_client *c, int memfd, uint32_t nslots)
{
	size_t need = MMN_SEQPAGE_SIZE(nslots), len = page_round(need);
	const struct mmn_seqpage *sp;
	struct stat st;
	void *addr;

	if (!nslots || nslots > MMN_MAX_SLOTS)
		return -EBADMSG;
	if (fstat(memfd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < need)
		return -EBADMSG;
	if (c->sp_addr && len <= c->sp_len) {
		addr = mmap(c->sp_addr, len, PROT_READ, MAP_SHARED | MAP_FIXED, memfd, 0);
	} else {
		if (c->sp_addr)
			retire(c);
		addr = mmap(NULL, len, PROT_READ, MAP_SHARED, memfd, 0);
		if (addr != MAP_FAILED) {
			c->sp_addr = addr;
			c->sp_len = len;
		}
	}
	if (addr == MAP_FAILED)
		return -errno;
	sp = addr;
	c->sp_memfd = memfd;
	if (sp->magic != MMN_SEQPAGE_MAGIC || sp->version != MMN_SEQPAGE_VERSION || sp->nslots < nslots) {
		c->nslots = 0;
		return -EBADMSG;
	}
	c->nslots = nslots;
	return 0;
}

int mmn__waitpage_map(struct mmn_client *c, int memfd, uint32_t nslots)
{
	size_t len = page_round(MMN_WAITPAGE_SIZE(nslots));
	struct stat st;
	void *addr;

	if (fstat(memfd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < MMN_WAITPAGE_SIZE(nslots) || nslots > MMN_MAX_SLOTS) {
		close(memfd);
		return -EBADMSG;
	}
	if (!c->wp_addr) {
		/* Address space only: pages come when touched. */
		size_t all = page_round(MMN_WAITPAGE_SIZE(MMN_MAX_SLOTS));

		addr = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			    -1, 0);
		if (addr == MAP_FAILED) {
			close(memfd);
			return -errno;
		}
		c->wp_addr = addr;
		c->wp_len = all;
	}
	addr = mmap(c->wp_addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memfd, 0);
	close(memfd); /* nothing waits on this page: the mapping is enough */
	if (addr == MAP_FAILED)
		return -errno;
	c->wp_live = true;
	return 0;
}

/* Where seq.word points while a sub is not attached: odd, gen 0, never a valid slot. */
static const uint64_t parked = 1;

/*
 * What the ABI 2 slow path returns for a sub that will never be read again
 * (dead, fork child, NULL): odd, so not a value of a live slot, and neither
 * parked's value nor 0 (a placeholder page), so every retry collides.
 */
#define NEVER UINT64_MAX

/* A change to struct mmn_sub_seq or its meaning is a new MMN_SEQ_ABI and a new version node. */
_Static_assert(offsetof(struct mmn_sub, seq) == 0 && MMN_SEQ_ABI == 2,
	       "mmn.h: struct mmn_sub starts with struct mmn_sub_seq of ABI 2 (mmn_read_begin_slow2@MMN_1.3)");

static void wake_epoch(struct mmn_sub *s)
{
	futex(&s->epoch, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

/* Park @s: the inline readers fail from now on, read_begin waits on the epoch. */
static void detach_sub(struct mmn_sub *s)
{
	uint32_t e = __atomic_load_n(&s->epoch, __ATOMIC_RELAXED);

	__atomic_store_n(&s->seq.word, &parked, __ATOMIC_RELEASE);
	if (!(e & 1))
		__atomic_store_n(&s->epoch, e + 1, __ATOMIC_RELEASE);
	wake_epoch(s);
}

void mmn__seq_init(struct mmn_sub *s)
{
	s->epoch = 1;
	s->seq.word = &parked;
}

/* @slot's flag in the waiter page, NULL without one. */
static uint8_t *waiter_flag(struct mmn_client *c, const struct mmn_seqpage_slot *slot)
{
	const struct mmn_seqpage *sp = c->sp_addr;

	if (!c->wp_live)
		return NULL;
	return (uint8_t *)c->wp_addr + (slot - sp->slots);
}

void mmn__seq_publish(struct mmn_sub *s)
{
	const struct mmn_seqpage_slot *slot = __atomic_load_n(&s->slot, __ATOMIC_RELAXED);
	uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_RELAXED);
	const uint64_t *w = (const uint64_t *)(const void *)slot;
	uint32_t e;

	if (__atomic_load_n(&s->dead, __ATOMIC_RELAXED) || !slot)
		return;
	e = __atomic_load_n(&s->epoch, __ATOMIC_RELAXED);
	if (!(e & 1)) {
		if (s->seq.word == w && (uint32_t)(s->seq.cookie >> 32) == gen) {
			wake_epoch(s);
			return;
		}
		/* Attached elsewhere while published: values of the old slot must fail. */
		detach_sub(s);
		e++;
	}
	e++;
	if (gen > s->c->gen_max)
		s->c->gen_max = gen;
	/* cookie and wflag before word (release): a reader of the new word sees them. */
	__atomic_store_n(&s->seq.cookie, (uint64_t)gen << 32 | e, __ATOMIC_RELAXED);
	__atomic_store_n(&s->wflag, waiter_flag(s->c, slot), __ATOMIC_RELAXED);
	__atomic_store_n(&s->seq.word, w, __ATOMIC_RELEASE);
	__atomic_store_n(&s->epoch, e, __ATOMIC_RELEASE);
	wake_epoch(s);
}

void mmn__seq_kill(struct mmn_sub *s)
{
	const struct mmn_seqpage_slot *slot = __atomic_load_n(&s->slot, __ATOMIC_RELAXED);

	__atomic_store_n(&s->dead, 1, __ATOMIC_RELEASE);
	detach_sub(s);
	if (slot)
		futex(&slot->seq, FUTEX_WAKE, INT_MAX, NULL);
}

void mmn__seqpage_detach(struct mmn_client *c)
{
	const struct mmn_seqpage *old;

	for (struct mmn_sub *s = c->subs; s; s = s->next)
		detach_sub(s);
	if (c->sp_addr && mmap(c->sp_addr, c->sp_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			       0) == MAP_FAILED)
		mmn__log(LOG_ERR, "mmn: replacing the sequence page failed: %m");
	if (c->wp_live && mmap(c->wp_addr, c->wp_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
		mmn__log(LOG_ERR, "mmn: replacing the waiter page failed: %m");
	c->wp_live = false;
	if (c->sp_memfd < 0)
		return;
	old = mmap(NULL, c->sp_len, PROT_READ, MAP_SHARED, c->sp_memfd, 0);
	if (old != MAP_FAILED) {
		for (struct mmn_sub *s = c->subs; s; s = s->next) {
			const struct mmn_seqpage_slot *slot = __atomic_load_n(&s->slot, __ATOMIC_RELAXED);
			size_t off;

			if (!slot)
				continue;
			off = (size_t)((const char *)slot - (const char *)c->sp_addr);
			if (off < c->sp_len)
				futex((const uint32_t *)((const char *)old + off), FUTEX_WAKE, INT_MAX, NULL);
		}
		munmap((void *)old, c->sp_len);
	}
	close(c->sp_memfd);
	c->sp_memfd = -1;
	c->nslots = 0;
}

void mmn__seqpage_unmap_all(struct mmn_client *c)
{
	if (c->sp_addr)
		munmap(c->sp_addr, c->sp_len);
	for (unsigned i = 0; i < c->nretired; i++)
		munmap(c->retired[i].addr, c->retired[i].len);
	if (c->wp_addr)
		munmap(c->wp_addr, c->wp_len);
	c->wp_addr = NULL;
	c->wp_live = false;
	c->sp_addr = NULL;
	c->nretired = 0;
}

/*
 * Sleep until the slot word at @w is no longer @v (odd) or a wake-up comes.
 * With a waiter page, raise the slot's flag first and look again: mmnd
 * wakes only flagged slots (the ordering argument is in proto/seqpage.h).
 * mmnd clears the flag when it wakes; a flag left raised costs one wake.
 */
static void slot_wait(const uint64_t *w, uint64_t v, uint8_t *flag)
{
	if (flag) {
		__atomic_store_n(flag, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(w, __ATOMIC_RELAXED) != v)
			return;
	}
	futex((const uint32_t *)(const void *)w, FUTEX_WAIT, MMN_SEQ_WORD(v), NULL);
}

enum quiet { QUIET, QUIET_FORKED, QUIET_DEAD };

/*
 * Wait until @s is attached and its slot even: QUIET with the slot word in
 * *@v and seq.cookie in *@cookie; or QUIET_FORKED/QUIET_DEAD (with the
 * epoch in *@cookie) when it never will be.
 */
static enum quiet wait_quiet(struct mmn_sub *s, uint64_t *v, uint64_t *cookie)
{
	static const struct timespec slot_lost = {.tv_nsec = 10 * 1000 * 1000};

	for (;;) {
		const uint64_t *w;
		uint8_t *flag;
		uint32_t e;

		if (mmn__forked(s->c))
			return QUIET_FORKED;
		e = __atomic_load_n(&s->epoch, __ATOMIC_ACQUIRE);
		*cookie = e;
		if (__atomic_load_n(&s->dead, __ATOMIC_ACQUIRE))
			return QUIET_DEAD;
		if (e & 1) {
			futex(&s->epoch, FUTEX_WAIT_PRIVATE, e, NULL);
			continue;
		}
		w = __atomic_load_n(&s->seq.word, __ATOMIC_ACQUIRE);
		*cookie = __atomic_load_n(&s->seq.cookie, __ATOMIC_RELAXED);
		flag = __atomic_load_n(&s->wflag, __ATOMIC_RELAXED);
		*v = __atomic_load_n(w, __ATOMIC_ACQUIRE);
		if (w == &parked || (uint32_t)*cookie != e ||
		    __atomic_load_n(&s->epoch, __ATOMIC_ACQUIRE) != e)
			continue;
		if (MMN_SEQ_GEN(*v) != (uint32_t)(*cookie >> 32)) {
			/* mmnd gave the slot away: its Release/Revoked is on the way. */
			futex(&s->epoch, FUTEX_WAIT_PRIVATE, e, &slot_lost);
			continue;
		}
		if (MMN_SEQ_WORD(*v) & 1) {
			slot_wait(w, *v, flag);
			continue;
		}
		return QUIET;
	}
}

/* ABI 2: the slot word. */
MMN_EXPORT uint64_t mmn_read_begin_slow2(struct mmn_sub *s)
{
	uint64_t v, cookie;

	if (!s || wait_quiet(s, &v, &cookie) != QUIET)
		return NEVER;
	return v;
}

/* ABI 1: epoch << 32 | seq; odd for a dead sub (with its epoch), 1 in a fork child. */
MMN_EXPORT uint64_t mmn_read_begin_slow(struct mmn_sub *s)
{
	uint64_t v, cookie;

	if (!s)
		return 1;
	switch (wait_quiet(s, &v, &cookie)) {
	case QUIET:
		return cookie << 32 | MMN_SEQ_WORD(v);
	case QUIET_DEAD:
		return cookie << 32 | 1;
	default:
		return 1;
	}
}

/* The check of ABI 1: the same slot word (gen and seq) and the same epoch. */
static bool retry_v1(const struct mmn_sub_seq *q, uint64_t seq)
{
	const uint64_t *w;
	uint64_t cookie, v;

	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	w = __atomic_load_n(&q->word, __ATOMIC_ACQUIRE);
	cookie = __atomic_load_n(&q->cookie, __ATOMIC_RELAXED);
	v = __atomic_load_n(w, __ATOMIC_ACQUIRE);
	v ^= (cookie & 0xffffffff00000000ull) | (uint32_t)seq;
	return (v | (uint32_t)(cookie ^ (seq >> 32))) != 0;
}

/* For programs built against an mmn.h without the inline readers (MMN_1.0, ABI 1's values). */
MMN_EXPORT uint64_t mmn_read_begin(struct mmn_sub *s)
{
	return mmn_read_begin_slow(s);
}

MMN_EXPORT bool mmn_read_retry(struct mmn_sub *s, uint64_t seq)
{
	return !s || retry_v1(&s->seq, seq);
}
