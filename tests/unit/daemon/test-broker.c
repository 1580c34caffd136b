/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The broker with the test source and raw-protocol clients: fan-out, acks,
 * deadlines, sequence page, coalescing of ksubs, deferral, client loss,
 * release.
 */
#include "harness.h"

#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>

#define B	MMN__V1__SUB_FLAG__SUB_BLOCKING
#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static const uint64_t A = 0x100000;

static void test_hello(void)
{
	struct harness h;
	struct tclient c;
	void *w;

	h_init(&h, NULL);
	tap_is_int(tc_hello(&h, &c), 0, "hello: HelloReply with a sequence page");
	tap_is_int(c.page->magic, MMN_SEQPAGE_MAGIC, "hello: page magic");
	tap_is_int(c.nslots, MMN_BROKER_DEFAULT_MAX_SUBS, "hello: one slot per allowed subscription");
	tap_is_int(mmn__broker_nclients(h.b), 1, "hello: one client");
	/* The page is sealed against writable mappings. */
	{
		Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
		MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep;
		int fd = tc_connect_raw(&h), memfd = -1;

		hello.version_min = 1;
		hello.version_max = 3;
		env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
		env.hello = &hello;
		mmn__wire_send(fd, &env, NULL, 0, 0);
		rep = tc_recv_fd(&h, fd, &memfd);
		tap_ok(rep && rep->body_case == MMN__V1__ENVELOPE__BODY_HELLO_REPLY &&
			       rep->hello_reply->version == 2,
		       "hello: version range 1..3 negotiates 2, the highest both speak");
		tap_ok(rep && strcmp(rep->hello_reply->source, "test") == 0 &&
			       rep->hello_reply->acks_hold_kernel,
		       "hello: source caps in the reply");
		w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		tap_ok(w == MAP_FAILED, "hello: the sequence page cannot be mapped writable");
		if (w != MAP_FAILED)
			munmap(w, 4096);
		close(memfd);
		close(fd);
		mmn__wire_free(rep);
	}
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "hello: loop closes clean");
}

/* Two blocking clients and one non-blocking on one range. */
static void test_blocking_acks(void)
{
	struct harness h;
	struct tclient c[3];
	uint64_t sub[3], ev;
	uint32_t slot[3];
	MmnEnvelope *m;
	bool all = true;

	h_init(&h, NULL);
	for (int i = 0; i < 3; i++) {
		h_require(tc_hello(&h, &c[i]) == 0);
		sub[i] = tc_subscribe(&h, &c[i], A, 0x10000, i < 2, 1000, &slot[i]);
		h_require(sub[i] != 0);
	}
	tap_is_int(mmn__source_test_nksubs(h.src), 1, "acks: three equal ranges share one ksub");
	ev = mmn__source_test_invalidate(h.src, getpid(), A + 0x1000, A + 0x3000,
					 MMN__V1__EVENT_TYPE__EVENT_UNMAP, true);
	h_require(ev != 0);
	for (int i = 0; i < 3; i++) {
		m = tc_recv(&h, &c[i]);
		all &= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->event_id == ev &&
		       m->invalidate->sub_id == sub[i] && m->invalidate->start == A + 0x1000 &&
		       m->invalidate->end == A + 0x3000 && m->invalidate->needs_ack == (i < 2) &&
		       (m->invalidate->seq & 1);
		mmn__wire_free(m);
		all &= (tc_seq(&c[i], slot[i]) & 1) == 1;
	}
	tap_ok(all, "acks: every client got Invalidate (needs_ack only when blocking), slots odd");
	tap_ok(!mmn__source_test_acked(h.src, ev), "acks: source not acked before the clients");
	tc_ack(&c[0], sub[0], ev);
	h_pump(&h, 5);
	tap_ok(!mmn__source_test_acked(h.src, ev), "acks: one of two blocking acks is not enough");
	tc_ack(&c[1], sub[1], ev);
	h_pump(&h, 5);
	tap_is_int(mmn__source_test_ack_count(h.src, ev), 1, "acks: all blocking acked: source acked once");
	tap_ok(tc_quiet(&h, &c[2]), "acks: the non-blocking client owes and receives nothing more");
	mmn__source_test_end(h.src, ev);
	all = true;
	for (int i = 0; i < 3; i++) {
		m = tc_recv(&h, &c[i]);
		all &= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END &&
		       m->invalidate_end->event_id == ev && !(m->invalidate_end->seq & 1);
		mmn__wire_free(m);
		all &= (tc_seq(&c[i], slot[i]) & 1) == 0;
	}
	tap_ok(all, "acks: InvalidateEnd to all, slots even again");
	for (int i = 0; i < 3; i++)
		tc_close(&c[i]);
	h_pump(&h, 5);
	tap_is_int(mmn__source_test_nksubs(h.src), 0, "acks: ksub removed after the clients left");
	tap_is_int(h_fini(&h), 0, "acks: loop closes clean");
}

static void test_deadline(void)
{
	struct harness h;
	struct tclient fast, silent, nb;
	uint64_t sf, ss, sn, ev, t0, t1;
	MmnEnvelope *m;
	bool revoked = false;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &fast) == 0 && tc_hello(&h, &silent) == 0 && tc_hello(&h, &nb) == 0);
	sf = tc_subscribe(&h, &fast, A, 0x4000, true, 1000, NULL);
	ss = tc_subscribe(&h, &silent, A, 0x4000, true, 40, NULL);
	sn = tc_subscribe(&h, &nb, A, 0x4000, false, 0, NULL);
	h_require(sf && ss && sn);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	t0 = uv_now(&h.loop);
	m = tc_recv(&h, &fast);
	tap_ok(m && m->invalidate->deadline_ms == 1000, "deadline: Invalidate tells the time left");
	mmn__wire_free(m);
	m = tc_recv(&h, &silent);
	tap_ok(m && m->invalidate->deadline_ms == 40, "deadline: per-client deadline");
	mmn__wire_free(m);
	mmn__wire_free(tc_recv(&h, &nb));
	tc_ack(&fast, sf, ev);
	h_pump(&h, 5);
	tap_ok(!mmn__source_test_acked(h.src, ev), "deadline: silent client still holds the event");
	while (!mmn__source_test_acked(h.src, ev) && uv_now(&h.loop) - t0 < 5000)
		uv_run(&h.loop, UV_RUN_ONCE);
	t1 = uv_now(&h.loop);
	tap_ok(mmn__source_test_acked(h.src, ev), "deadline: source acked after the eviction");
	tap_ok(t1 - t0 >= 40 && t1 - t0 < 1000, "deadline: acked at the silent client's deadline (%llu ms)",
	       (unsigned long long)(t1 - t0));
	m = tc_recv(&h, &silent);
	revoked = BODY(m) == MMN__V1__ENVELOPE__BODY_REVOKED &&
		  m->revoked->reason == MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT &&
		  m->revoked->event_id == ev && m->revoked->sub_id == ss;
	mmn__wire_free(m);
	tap_ok(revoked, "deadline: Revoked{timeout} for the silent client's subscription");
	{
		struct admin_stats st;

		mmn__admin_stats(h.b, &st);
		tap_is_int(st.timeouts, 1, "deadline: one timeout counted");
	}
	mmn__source_test_end(h.src, ev);
	m = tc_recv(&h, &fast);
	tap_is_int(BODY(m), MMN__V1__ENVELOPE__BODY_INVALIDATE_END, "deadline: the acking client gets End");
	mmn__wire_free(m);
	tap_ok(tc_quiet(&h, &silent), "deadline: the evicted one gets no End (paired by Revoked)");
	/* The evicted subscription is gone: a new event does not reach it. */
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	tap_ok(tc_quiet(&h, &silent), "deadline: evicted subscription gets no more events");
	tc_ack(&fast, sf, ev);
	h_pump(&h, 5);
	tap_ok(mmn__source_test_acked(h.src, ev), "deadline: the remaining blocking client's ack suffices");
	mmn__source_test_end(h.src, ev);
	tc_close(&fast);
	tc_close(&silent);
	tc_close(&nb);
	tap_is_int(h_fini(&h), 0, "deadline: loop closes clean");
}

static void test_nonblocking_only(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s, ev;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	s = tc_subscribe(&h, &c, A, 0x2000, false, 0, NULL);
	h_require(s);
	{
		uint64_t st[2], en[2];
		bool blk[2];

		tap_ok(mmn__source_test_ksubs(h.src, getpid(), st, en, blk, 2) == 1 && !blk[0],
		       "nonblocking: ksub has no BLOCKING flag");
	}
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, 0, true);
	m = tc_recv(&h, &c);
	tap_ok(m && !m->invalidate->needs_ack, "nonblocking: told without needs_ack");
	mmn__wire_free(m);
	mmn__source_test_end(h.src, ev);
	mmn__wire_free(tc_recv(&h, &c));
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "nonblocking: loop closes clean");
}

/* The ksubs of the test source in address order; their count. */
static size_t ksubs_sorted(struct harness *h, uint64_t *st, uint64_t *en, bool *blk, size_t max)
{
	size_t n = mmn__source_test_ksubs(h->src, getpid(), st, en, blk, max);

	for (size_t i = 1; i < n && n <= max; i++)
		for (size_t j = i; j > 0 && st[j - 1] > st[j]; j--) {
			uint64_t x = st[j], y = en[j];
			bool z = blk[j];

			st[j] = st[j - 1], en[j] = en[j - 1], blk[j] = blk[j - 1];
			st[j - 1] = x, en[j - 1] = y, blk[j - 1] = z;
		}
	return n;
}

/* One event over [A, A + 0x50000) reaches each of @nsubs subs once. */
static void coalesce_one_event(struct harness *h, struct tclient *c, int nsubs)
{
	uint64_t ev = mmn__source_test_invalidate(h->src, getpid(), A, A + 0x50000, 0, true);
	uint64_t seen[8] = {0};
	int inv = 0, dup = 0;
	MmnEnvelope *m;

	while (inv < nsubs && (m = tc_recv(h, c)) && m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE) {
		for (int i = 0; i < inv; i++)
			dup += seen[i] == m->invalidate->sub_id;
		seen[inv++] = m->invalidate->sub_id;
		if (m->invalidate->needs_ack)
			tc_ack(c, m->invalidate->sub_id, ev);
		mmn__wire_free(m);
	}
	tap_ok(inv == nsubs && !dup, "coalesce: one source event reaches each of the %d subscriptions once", nsubs);
	h_pump(h, 5);
	tap_ok(mmn__source_test_acked(h->src, ev), "coalesce: acked");
	mmn__source_test_end(h->src, ev);
	for (int i = 0; i < nsubs; i++)
		mmn__wire_free(tc_recv(h, c));
}

/*
 * Granules of 64 KiB: a sub is watched by the aligned ksubs over it; a sub
 * inside a watched granule costs the source nothing; a bridge gets ksubs
 * for its gaps only, and existing ksubs keep their ids and ranges; a ksub
 * goes with the last sub overlapping it.
 */
static void test_coalescing(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, s3, s4, st[4], en[4];
	bool blk[4];
	size_t n;

	h_init(&h, NULL);
	h.src->caps.ksub_granule = 0x10000;
	h_require(tc_hello(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A + 0x800, 0x800, false, 0, NULL);
	n = ksubs_sorted(&h, st, en, blk, 4);
	tap_ok(n == 1 && st[0] == A && en[0] == A + 0x10000 && !blk[0], "coalesce: a sub's ksub is its granule");
	s2 = tc_subscribe(&h, &c, A + 0x4000, 0x2000, false, 0, NULL);
	tap_ok(ksubs_sorted(&h, st, en, blk, 4) == 1 && st[0] == A && en[0] == A + 0x10000,
	       "coalesce: a sub in a watched granule adds no ksub");
	s3 = tc_subscribe(&h, &c, A + 0x40000, 0x800, false, 0, NULL);
	n = ksubs_sorted(&h, st, en, blk, 4);
	tap_ok(n == 2 && st[1] == A + 0x40000 && en[1] == A + 0x50000, "coalesce: a distant range gets its granule");
	s4 = tc_subscribe(&h, &c, A + 0x8000, 0x40000, true, 0, NULL);
	n = ksubs_sorted(&h, st, en, blk, 4);
	tap_ok(n == 3 && st[0] == A && en[0] == A + 0x10000 && st[1] == A + 0x10000 && en[1] == A + 0x40000 &&
		       st[2] == A + 0x40000 && en[2] == A + 0x50000 && blk[0] && blk[1] && blk[2],
	       "coalesce: a blocking bridge adds one ksub for the gap; all three BLOCKING, none moved");
	tap_ok(s1 && s2 && s3 && s4, "coalesce: all subscribed");
	coalesce_one_event(&h, &c, 4);
	tc_unsubscribe_send(&c, s4);
	mmn__wire_free(tc_recv(&h, &c));
	n = ksubs_sorted(&h, st, en, blk, 4);
	tap_ok(n == 2 && !blk[0] && !blk[1] && st[0] == A && en[0] == A + 0x10000 && st[1] == A + 0x40000 &&
		       en[1] == A + 0x50000,
	       "coalesce: the bridge leaves: its gap ksub goes, the others lose BLOCKING");
	tc_unsubscribe_send(&c, s1);
	mmn__wire_free(tc_recv(&h, &c));
	tap_is_int(ksubs_sorted(&h, st, en, blk, 4), 2, "coalesce: a ksub stays while a sub overlaps it");
	tc_unsubscribe_send(&c, s2);
	mmn__wire_free(tc_recv(&h, &c));
	n = ksubs_sorted(&h, st, en, blk, 4);
	tap_ok(n == 1 && st[0] == A + 0x40000, "coalesce: it goes with the last one");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "coalesce: loop closes clean");
}

static void test_deferral(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, ev, s2 = 0;
	uint32_t slot1;
	MmnEnvelope *m;
	Mmn__V1__Subscribe sreq = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, false, 0, &slot1);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	m = tc_recv(&h, &c);
	tap_is_int(BODY(m), MMN__V1__ENVELOPE__BODY_INVALIDATE, "defer: invalidation in flight");
	mmn__wire_free(m);
	sreq.start = A + 0x8000;
	sreq.length = 0x1000;
	sreq.flags = MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	env.request_id = 77;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &sreq;
	tc_send(&c, &env);
	tc_unsubscribe_send(&c, s1);
	tap_ok(tc_quiet(&h, &c), "defer: subscribe and unsubscribe wait while the target is invalidating");
	tap_is_int(mmn__source_test_nksubs(h.src), 1, "defer: no ksub change while in flight");
	mmn__source_test_end(h.src, ev);
	m = tc_recv(&h, &c);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END && m->invalidate_end->sub_id == s1,
	       "defer: the unsubscribing sub still gets its End (pairing)");
	mmn__wire_free(m);
	m = tc_recv(&h, &c);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY && m->request_id == 77,
	       "defer: SubscribeReply at the end, in order");
	if (BODY(m) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY)
		s2 = m->subscribe_reply->sub_id;
	mmn__wire_free(m);
	m = tc_recv(&h, &c);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_STATUS && m->status->error == 0,
	       "defer: then the Unsubscribe's Status");
	mmn__wire_free(m);
	tap_ok(s2 != 0 && mmn__source_test_nksubs(h.src) == 1, "defer: applied: one ksub, for the new range");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "defer: loop closes clean");
}

static void test_client_loss(void)
{
	struct harness h;
	struct tclient a, b;
	uint64_t sa, sb, ev;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &a) == 0 && tc_hello(&h, &b) == 0);
	sa = tc_subscribe(&h, &a, A, 0x1000, true, 5000, NULL);
	sb = tc_subscribe(&h, &b, A + 0x10000, 0x1000, true, 5000, NULL);
	h_require(sa && sb);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	mmn__wire_free(tc_recv(&h, &a));
	tc_close(&a);
	h_pump(&h, 5);
	tap_ok(mmn__source_test_acked(h.src, ev), "loss: a lost client's pending ack counts as done");
	tap_is_int(mmn__source_test_nksubs(h.src), 2, "loss: ksub stays while the event is in flight");
	mmn__source_test_end(h.src, ev);
	h_pump(&h, 5);
	tap_is_int(mmn__source_test_nksubs(h.src), 1, "loss: its ksub goes once the target is quiescent");
	tap_is_int(mmn__broker_nclients(h.b), 1, "loss: the other client is still connected");
	ev = mmn__source_test_invalidate(h.src, getpid(), A + 0x10000, A + 0x11000, 0, true);
	mmn__wire_free(tc_recv(&h, &b));
	tc_ack(&b, sb, ev);
	h_pump(&h, 5);
	tap_ok(mmn__source_test_acked(h.src, ev), "loss: the other client works normally");
	mmn__source_test_end(h.src, ev);
	mmn__wire_free(tc_recv(&h, &b));
	tc_close(&b);
	tap_is_int(h_fini(&h), 0, "loss: loop closes clean");
}

static void test_release(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, ev;
	MmnEnvelope *m;
	int rel = 0;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, true, 5000, NULL);
	s2 = tc_subscribe(&h, &c, A + 0x100000, 0x1000, false, 0, NULL);
	h_require(s1 && s2);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	mmn__wire_free(tc_recv(&h, &c));
	tap_is_int(mmn__source_test_release(h.src, getpid()), 2, "release: two ksubs released");
	h_pump(&h, 5);
	tap_ok(mmn__source_test_acked(h.src, ev), "release: the pending ack is dropped, source acked");
	while ((m = tc_recv(&h, &c))) {
		if (m->body_case == MMN__V1__ENVELOPE__BODY_RELEASE &&
		    (m->release->sub_id == s1 || m->release->sub_id == s2))
			rel++;
		mmn__wire_free(m);
		if (rel == 2)
			break;
	}
	tap_is_int(rel, 2, "release: Release for each subscription");
	tap_is_int(mmn__source_test_nksubs(h.src), 0, "release: every ksub deleted");
	mmn__source_test_end(h.src, ev);
	tap_ok(tc_quiet(&h, &c), "release: no End after Release");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "release: loop closes clean");
}

static void test_drain(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s, ev;
	MmnEnvelope *m;
	bool got = false;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	s = tc_subscribe(&h, &c, A, 0x1000, true, 5000, NULL);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	mmn__wire_free(tc_recv(&h, &c));
	mmn__broker_drain(h.b);
	tap_ok(mmn__source_test_acked(h.src, ev), "drain: pending invalidation acked");
	m = tc_recv(&h, &c);
	got = BODY(m) == MMN__V1__ENVELOPE__BODY_REVOKED && m->revoked->sub_id == s &&
	      m->revoked->reason == MMN__V1__REVOKE_REASON__REVOKE_SHUTDOWN;
	mmn__wire_free(m);
	tap_ok(got, "drain: Revoked{shutdown}");
	tap_ok(tc_eof(&h, c.fd), "drain: connection closed");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "drain: loop closes clean");
}

/*
 * A non-blocking client that does not read: its queue is bounded, its
 * events are coalesced into one whole-range pair, the source is never
 * held, and what it does receive stays paired.
 */
static void test_slow_reader(void)
{
	struct broker_options o;
	struct harness h;
	struct tclient c, blk;
	uint64_t s, sb, n_inv = 0, n_end = 0, resync = 0, unpaired = 0, acked = 0;
	uint64_t open_ev[64];
	int nopen = 0;
	struct admin_stats st;
	MmnEnvelope *m;

	mmn__broker_options_default(&o);
	o.max_queued = 8;
	h_init(&h, &o);
	h_require(tc_hello(&h, &c) == 0 && tc_hello(&h, &blk) == 0);
	s = tc_subscribe(&h, &c, A, 0x10000, false, 0, NULL);
	sb = tc_subscribe(&h, &blk, A, 0x1000, true, 1000, NULL);
	h_require(s && sb);
	for (int i = 0; i < 1500; i++) {
		uint64_t ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);

		m = tc_recv(&h, &blk);
		if (BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->needs_ack)
			tc_ack(&blk, sb, ev);
		mmn__wire_free(m);
		h_pump(&h, 2);
		acked += mmn__source_test_acked(h.src, ev);
		mmn__source_test_end(h.src, ev);
		mmn__wire_free(tc_recv(&h, &blk));
	}
	tap_is_int(acked, 1500, "slow reader: the blocking client's ack alone releases every event");
	mmn__admin_stats(h.b, &st);
	tap_ok(st.queue_overflows >= 1, "slow reader: queue overflow counted (%llu)",
	       (unsigned long long)st.queue_overflows);
	tap_is_int(mmn__broker_nclients(h.b), 2, "slow reader: still connected (queue bounded)");
	/* Now read everything; writable flushes the queue, then the resync pair. */
	while ((m = tc_recv(&h, &c))) {
		if (m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE) {
			n_inv++;
			if (m->invalidate->event == MMN__V1__EVENT_TYPE__EVENT_RESYNC &&
			    m->invalidate->start == A && m->invalidate->end == A + 0x10000)
				resync++;
			if (nopen < 64)
				open_ev[nopen++] = m->invalidate->event_id;
		} else if (m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE_END) {
			int k;

			n_end++;
			for (k = 0; k < nopen && open_ev[k] != m->invalidate_end->event_id; k++)
				;
			if (k == nopen)
				unpaired++;
			else
				open_ev[k] = open_ev[--nopen];
		}
		mmn__wire_free(m);
		if (resync && !nopen && tc_quiet(&h, &c))
			break;
	}
	tap_ok(n_inv < 1500 && n_inv == n_end && !unpaired && !nopen,
	       "slow reader: %llu delivered Invalidates, each paired", (unsigned long long)n_inv);
	tap_is_int(resync, 1, "slow reader: one whole-range RESYNC pair for what was coalesced");
	tap_ok(tc_quiet(&h, &blk), "slow reader: the blocking client got exactly its pairs");
	tc_close(&c);
	tc_close(&blk);
	tap_is_int(h_fini(&h), 0, "slow reader: loop closes clean");
}

/* SOURCE_REVOKED (lost events): a RESYNC pair for every sub on the ksub; SOURCE_LOST: Revoked{source gone}.
 */
static void test_source_trouble(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, ev, st[2], en[2];
	uint32_t slot1;
	bool blk[2];
	uint32_t seq0;
	MmnEnvelope *m;
	int pairs = 0;

	h_init(&h, NULL);
	h.src->caps.ksub_granule = 0x10000; /* both subs on one ksub */
	h_require(tc_hello(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, false, 0, &slot1);
	s2 = tc_subscribe(&h, &c, A + 0x1000, 0x1000, false, 0, NULL);
	h_require(s1 && s2 && mmn__source_test_ksubs(h.src, getpid(), st, en, blk, 2) == 1);
	seq0 = tc_seq(&c, slot1);
	{
		/* The test source numbers ksubs from 1; the coalesced one is the only live one. */
		struct source_event_sub sub = {.ksub_id = 0, .start = A, .end = A + 0x2000};
		struct source_event e = {.kind = SOURCE_REVOKED, .reason = 3, .nsubs = 1, .subs = &sub};

		for (uint32_t id = 1; id < 8; id++) {
			sub.ksub_id = id;
			mmn__source_test_inject(h.src, &e);
		}
	}
	for (int i = 0; i < 4 && (m = tc_recv(&h, &c)); i++) {
		if (BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE &&
		    m->invalidate->event == MMN__V1__EVENT_TYPE__EVENT_RESYNC &&
		    ((m->invalidate->sub_id == s1 && m->invalidate->start == A &&
		      m->invalidate->end == A + 0x1000) ||
		     m->invalidate->sub_id == s2))
			pairs++;
		if (BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END)
			pairs++;
		mmn__wire_free(m);
	}
	tap_is_int(pairs, 4, "revoked: a whole-range RESYNC Invalidate and its End for each sub");
	tap_is_int(tc_seq(&c, slot1), seq0 + 2, "revoked: the slot moved on (odd, then even)");

	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	mmn__wire_free(tc_recv(&h, &c));
	{
		struct source_event e = {.kind = SOURCE_LOST, .reason = (uint32_t)-ENODEV};
		int revoked = 0;

		mmn__source_test_inject(h.src, &e);
		for (int i = 0; i < 2 && (m = tc_recv(&h, &c)); i++) {
			if (BODY(m) == MMN__V1__ENVELOPE__BODY_REVOKED &&
			    m->revoked->reason == MMN__V1__REVOKE_REASON__REVOKE_SOURCE_GONE)
				revoked++;
			mmn__wire_free(m);
		}
		tap_is_int(revoked, 2, "lost: Revoked{source gone} for every subscription");
		tap_ok(tc_quiet(&h, &c), "lost: nothing else (the in-flight pair was closed by Revoked)");
		m = tc_subscribe_req(&h, &c, 0, A, 0x1000, MMN__V1__SUB_FLAG__SUB_BLOCKING, 0);
		tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == -ENODEV,
		       "lost: later Subscribe gets -ENODEV");
		mmn__wire_free(m);
	}
	(void)ev;
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "lost: loop closes clean");
}

struct seen {
	int clients, subs;
	uint64_t client_id;
	const char *mode;
};

static void count_client(const struct admin_client *ac, void *ud)
{
	struct seen *s = ud;

	s->clients++;
	s->client_id = ac->id;
	s->mode = strcmp(ac->mode, "mixed") == 0 ? "mixed" : "other";
}

static void count_sub(const struct admin_sub *as, void *ud)
{
	((struct seen *)ud)->subs++;
}

static int observed_evictions;

static void on_evicted(void *ud, uint64_t client_id, const char *reason)
{
	observed_evictions++;
}

static void test_admin(void)
{
	struct harness h;
	struct tclient c;
	struct seen seen = {0};
	struct admin_defaults d;
	struct admin_observer obs = {.client_evicted = on_evicted};
	const char *name;
	uint64_t mask;
	bool holds;

	h_init(&h, NULL);
	mmn__admin_set_observer(h.b, &obs);
	h_require(tc_hello(&h, &c) == 0);
	h_require(tc_subscribe(&h, &c, A, 0x1000, true, 0, NULL) &&
		  tc_subscribe(&h, &c, A, 0x1000, false, 0, NULL));
	mmn__admin_foreach_client(h.b, count_client, &seen);
	mmn__admin_foreach_sub(h.b, 0, 0, count_sub, &seen);
	tap_ok(seen.clients == 1 && seen.subs == 2 && strcmp(seen.mode, "mixed") == 0,
	       "admin: one client in mixed mode with two subscriptions");
	seen.subs = 0;
	mmn__admin_foreach_sub(h.b, 0, getpid() + 1, count_sub, &seen);
	tap_is_int(seen.subs, 0, "admin: filter by target pid");
	mmn__admin_source(h.b, &name, &mask, &holds);
	tap_ok(strcmp(name, "test") == 0 && holds, "admin: source");
	mmn__admin_get_defaults(h.b, &d);
	d.ack_timeout_ms = d.ack_cap_ms + 1;
	tap_is_int(mmn__admin_set_defaults(h.b, &d), -EINVAL, "admin: default timeout above the cap refused");
	d.ack_timeout_ms = 7;
	tap_is_int(mmn__admin_set_defaults(h.b, &d), 0, "admin: defaults changed");
	{
		MmnEnvelope *m = tc_subscribe_req(&h, &c, 0, A, 0x1000, MMN__V1__SUB_FLAG__SUB_BLOCKING, 0);

		tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY &&
			       m->subscribe_reply->ack_timeout_ms == 7,
		       "admin: new default applies to new subscriptions");
		mmn__wire_free(m);
	}
	tap_is_int(mmn__admin_evict(h.b, 999), -ENOENT, "admin: evict an unknown client");
	tap_is_int(mmn__admin_evict(h.b, seen.client_id), 0, "admin: evict");
	{
		int revoked = 0;
		MmnEnvelope *m;

		while ((m = tc_recv(&h, &c))) {
			revoked += BODY(m) == MMN__V1__ENVELOPE__BODY_REVOKED &&
				   m->revoked->reason == MMN__V1__REVOKE_REASON__REVOKE_ADMIN;
			mmn__wire_free(m);
		}
		tap_ok(revoked == 3 && observed_evictions == 1 && mmn__broker_nclients(h.b) == 0,
		       "admin: evicted client told Revoked{admin} for each sub, observer called, "
		       "disconnected");
	}
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "admin: loop closes clean");
}

/* A source that never sends END cannot leave the target's deferred requests waiting forever. */
static void test_missing_end(void)
{
	struct broker_options o;
	struct harness h;
	struct tclient c;
	uint64_t s, ev, t0;
	MmnEnvelope *m;
	bool end = false, reply = false;

	mmn__broker_options_default(&o);
	o.end_timeout_ms = 300;
	h_init(&h, &o);
	h_require(tc_hello(&h, &c) == 0);
	s = tc_subscribe(&h, &c, A, 0x1000, false, 0, NULL);
	uv_update_time(&h.loop);
	t0 = uv_now(&h.loop);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	mmn__wire_free(tc_recv(&h, &c));
	tc_unsubscribe_send(&c, s);
	tap_ok(tc_quiet(&h, &c), "no END: the Unsubscribe waits for the invalidation");
	while (!(end && reply) && uv_now(&h.loop) - t0 < 5000) {
		uv_run(&h.loop, UV_RUN_ONCE);
		while ((m = tc_recv_fd(&h, c.fd, NULL))) {
			end |= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END &&
			       m->invalidate_end->event_id == ev;
			reply |= BODY(m) == MMN__V1__ENVELOPE__BODY_STATUS;
			mmn__wire_free(m);
			if (end && reply)
				break;
		}
	}
	tap_ok(end && reply && uv_now(&h.loop) - t0 >= 300,
	       "no END: mmnd ends the event itself after end_timeout_ms, then applies the Unsubscribe");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "no END: loop closes clean");
}

struct waiter {
	const uint32_t *word;
	uint32_t odd;
	int done_fd;
};

/* What mmn_read_begin() does while a slot is odd: a shared FUTEX_WAIT. */
static void *futex_waiter(void *arg)
{
	struct waiter *w = arg;

	while (__atomic_load_n(w->word, __ATOMIC_ACQUIRE) == w->odd)
		syscall(SYS_futex, w->word, FUTEX_WAIT, w->odd, NULL, NULL, 0);
	if (write(w->done_fd, "x", 1) != 1)
		abort();
	return NULL;
}

static void test_futex_wake(void)
{
	struct harness h;
	struct tclient c;
	uint32_t slot;
	uint64_t s, ev;
	struct waiter w;
	pthread_t th;
	int p[2];
	struct pollfd pf;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0 && pipe(p) == 0);
	s = tc_subscribe(&h, &c, A, 0x1000, false, 0, &slot);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	mmn__wire_free(tc_recv(&h, &c));
	w.word = &c.page->slots[slot].seq;
	w.odd = tc_seq(&c, slot);
	w.done_fd = p[1];
	h_require(s && (w.odd & 1) && pthread_create(&th, NULL, futex_waiter, &w) == 0);
	pf = (struct pollfd){.fd = p[0], .events = POLLIN};
	tap_ok(poll(&pf, 1, 50) == 0, "futex: a reader waits while the slot is odd");
	mmn__source_test_end(h.src, ev);
	pf.revents = 0;
	tap_ok(poll(&pf, 1, 10000) == 1, "futex: END wakes it (shared FUTEX_WAKE on the read-only page)");
	pthread_join(th, NULL);
	close(p[0]);
	close(p[1]);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "futex: loop closes clean");
}

int main(void)
{
	test_hello();
	test_blocking_acks();
	test_deadline();
	test_nonblocking_only();
	test_coalescing();
	test_deferral();
	test_client_loss();
	test_release();
	test_drain();
	test_slow_reader();
	test_source_trouble();
	test_admin();
	test_missing_end();
	test_futex_wake();
	return tap_done();
}
