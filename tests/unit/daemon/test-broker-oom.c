/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Refused non-blockable invalidations (the OOM reaper, issues 3 and 4) with
 * the test source and raw-protocol clients: blocking clients are asked to
 * drop their mappings (Invalidate{blockable=false, needs_ack=true}), the
 * source is never acked, and once they acked or were evicted the listed
 * ksubs lose BLOCKING for good, so the kernel's retry succeeds.  Pairing
 * holds whichever of END and the ack comes first.  No sleeps: deadlines are
 * waited for with uv_run(UV_RUN_ONCE), measured by the loop.
 */
#include "harness.h"

#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static const uint64_t A = 0x200000;

/* Is the source's ksub covering @addr BLOCKING?  -1 when there is none. */
static int ksub_blocking_at(struct harness *h, uint64_t addr)
{
	uint64_t st[16], en[16];
	bool blk[16];
	size_t n = mmn__source_test_ksubs(h->src, getpid(), st, en, blk, 16);

	for (size_t i = 0; i < n && i < 16; i++)
		if (st[i] <= addr && addr < en[i])
			return blk[i];
	return -1;
}

static bool is_inv(const MmnEnvelope *m, uint64_t sub, uint64_t ev, bool needs_ack)
{
	return BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->sub_id == sub &&
	       m->invalidate->event_id == ev && !m->invalidate->blockable &&
	       m->invalidate->needs_ack == needs_ack && (m->invalidate->seq & 1);
}

static bool is_end(const MmnEnvelope *m, uint64_t sub, uint64_t ev)
{
	return BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END && m->invalidate_end->sub_id == sub &&
	       m->invalidate_end->event_id == ev && !(m->invalidate_end->seq & 1);
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

/*
 * One loop iteration, at most @ms long: a guard timer keeps UV_RUN_ONCE
 * from waiting forever when no deadline is armed (a bug must fail, not hang).
 */
static void run_once_bounded(struct harness *h, uint64_t ms)
{
	uv_timer_t guard;

	uv_timer_init(&h->loop, &guard);
	uv_timer_start(&guard, tick_cb, ms, 0);
	uv_run(&h->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&h->loop, UV_RUN_NOWAIT);
}

/* Receive one message: Invalidate/InvalidateEnd as above, else only its body kind. */
static bool expect(struct harness *h, struct tclient *c, int body, uint64_t sub, uint64_t ev, bool needs_ack)
{
	MmnEnvelope *m = tc_recv(h, c);
	bool ok;

	if (body == MMN__V1__ENVELOPE__BODY_INVALIDATE)
		ok = is_inv(m, sub, ev, needs_ack);
	else if (body == MMN__V1__ENVELOPE__BODY_INVALIDATE_END)
		ok = is_end(m, sub, ev);
	else
		ok = BODY(m) == body;
	if (!ok)
		tap_diag("got body %d, wanted %d (sub %" PRIu64 " ev %" PRIu64 ")", BODY(m), body, sub, ev);
	mmn__wire_free(m);
	return ok;
}

/*
 * One blocking and one non-blocking client; the kernel's END comes before
 * the blocking client's ack (the usual order: the module does not wait).
 */
static void test_refused_ack(void)
{
	struct harness h;
	struct tclient blk, nb;
	uint64_t sb, sn, ev, ev2;
	uint32_t slb, sln;
	struct admin_stats st;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &blk) == 0 && tc_hello(&h, &nb) == 0);
	sb = tc_subscribe(&h, &blk, A, 0x4000, true, 1000, &slb);
	sn = tc_subscribe(&h, &nb, A, 0x4000, false, 0, &sln);
	h_require(sb && sn);
	tap_is_int(ksub_blocking_at(&h, A), 1, "oom: the shared ksub is BLOCKING");

	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x4000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 false);
	h_require(ev != 0);
	tap_ok(expect(&h, &blk, MMN__V1__ENVELOPE__BODY_INVALIDATE, sb, ev, true),
	       "oom: blocking client gets Invalidate{blockable=false, needs_ack=true}");
	tap_ok(expect(&h, &nb, MMN__V1__ENVELOPE__BODY_INVALIDATE, sn, ev, false),
	       "oom: non-blocking client gets Invalidate{blockable=false, needs_ack=false}");
	tap_is_int(ksub_blocking_at(&h, A), 1,
		   "oom: BLOCKING stays while the blocking client holds mappings");

	/* The module sends INVALIDATE_END for a refused event at once. */
	mmn__source_test_end(h.src, ev);
	tap_ok(expect(&h, &nb, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, sn, ev, false),
	       "oom: END: the non-blocking client is ended without waiting");
	tap_ok(tc_seq(&nb, sln) % 2 == 0, "oom: its slot is even again");
	tap_ok(tc_quiet(&h, &blk), "oom: END: the blocking client is not ended before its ack");
	tap_ok(tc_seq(&blk, slb) % 2 == 1, "oom: its slot stays odd (mappings not dropped yet)");
	tap_is_int(mmn__broker_pending_events(h.b), 1, "oom: the event is still in flight");

	tc_ack(&blk, sb, ev);
	h_pump(&h, 5);
	tap_is_int(ksub_blocking_at(&h, A), 0, "oom: after the ack the source's ksub is not BLOCKING");
	tap_is_int(mmn__source_test_ack_count(h.src, ev), 0,
		   "oom: the source is never acked for a refused event");
	tap_ok(expect(&h, &blk, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, sb, ev, false),
	       "oom: then the blocking client gets its InvalidateEnd (pairing)");
	tap_ok(tc_seq(&blk, slb) % 2 == 0, "oom: and its slot is even");
	tap_is_int(mmn__broker_pending_events(h.b), 0, "oom: nothing in flight");
	mmn__admin_stats(h.b, &st);
	tap_ok(st.nonblock_refusals == 1 && st.blocking_acks == 1 && st.evictions == 0,
	       "oom: counted one refusal, one blocking ack, no eviction");

	/* The reaper's retry: nothing refuses it now, nobody is waited for. */
	ev2 = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x4000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					  false);
	tap_ok(ev2 && expect(&h, &blk, MMN__V1__ENVELOPE__BODY_INVALIDATE, sb, ev2, false),
	       "oom: the retry is not refused: blocking client told without needs_ack");
	tap_ok(expect(&h, &nb, MMN__V1__ENVELOPE__BODY_INVALIDATE, sn, ev2, false),
	       "oom: the retry reaches the non-blocking client too");
	mmn__source_test_end(h.src, ev2);
	tap_ok(expect(&h, &blk, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, sb, ev2, false) &&
		       expect(&h, &nb, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, sn, ev2, false),
	       "oom: the retry is paired for both");
	tap_is_int(mmn__source_test_ack_count(h.src, ev2), 0, "oom: the retry is not acked either");

	/* Not set back: a new blocking subscription on the dying target. */
	tap_ok(tc_subscribe(&h, &blk, A + 0x1000, 0x1000, true, 1000, NULL) != 0,
	       "oom: a blocking client subscribes again");
	tap_is_int(ksub_blocking_at(&h, A), 0, "oom: BLOCKING is not set back on the reaped ksub");

	/* RELEASE follows; a fresh target's ksub is BLOCKING again. */
	tap_ok(mmn__source_test_release(h.src, getpid()) == 1, "oom: the victim exits (RELEASE)");
	tap_ok(expect(&h, &nb, MMN__V1__ENVELOPE__BODY_RELEASE, 0, 0, false),
	       "oom: Release to the non-blocking client");
	tap_ok(expect(&h, &blk, MMN__V1__ENVELOPE__BODY_RELEASE, 0, 0, false) &&
		       expect(&h, &blk, MMN__V1__ENVELOPE__BODY_RELEASE, 0, 0, false),
	       "oom: Release for both blocking subscriptions");
	tap_is_int(mmn__source_test_nksubs(h.src), 0, "oom: the ksub is gone");
	tap_ok(tc_subscribe(&h, &blk, A, 0x1000, true, 1000, NULL) != 0 && ksub_blocking_at(&h, A) == 1,
	       "oom: a new ksub is BLOCKING again");
	tc_close(&blk);
	tc_close(&nb);
	h_pump(&h, 5);
	tap_is_int(mmn__source_test_nksubs(h.src), 0, "oom: no ksub left");
	tap_is_int(h_fini(&h), 0, "oom: loop closes clean");
}

/* The ack comes before the kernel's END: BLOCKING is cleared at the ack, END pairs as usual. */
static void test_ack_before_end(void)
{
	struct harness h;
	struct tclient blk;
	uint64_t sb, ev;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &blk) == 0);
	sb = tc_subscribe(&h, &blk, A, 0x2000, true, 1000, NULL);
	h_require(sb);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 false);
	tap_ok(expect(&h, &blk, MMN__V1__ENVELOPE__BODY_INVALIDATE, sb, ev, true),
	       "ack-first: Invalidate{needs_ack} for a refused event");
	tc_ack(&blk, sb, ev);
	h_pump(&h, 5);
	tap_is_int(ksub_blocking_at(&h, A), 0, "ack-first: BLOCKING cleared at the ack");
	tap_ok(tc_quiet(&h, &blk), "ack-first: no InvalidateEnd before the kernel's END");
	mmn__source_test_end(h.src, ev);
	tap_ok(expect(&h, &blk, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, sb, ev, false),
	       "ack-first: InvalidateEnd at END");
	tap_is_int(mmn__source_test_ack_count(h.src, ev), 0, "ack-first: source not acked");
	tap_ok(tc_quiet(&h, &blk), "ack-first: exactly one InvalidateEnd");
	tc_close(&blk);
	tap_is_int(h_fini(&h), 0, "ack-first: loop closes clean");
}

/* A blocking client that never acks is evicted at its deadline, and BLOCKING is cleared all the same. */
static void test_silent_evicted(void)
{
	struct harness h;
	struct tclient silent, nb;
	uint64_t ss, sn, ev, t0, t1;
	MmnEnvelope *m;
	struct admin_stats st;
	bool revoked;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &silent) == 0 && tc_hello(&h, &nb) == 0);
	ss = tc_subscribe(&h, &silent, A, 0x4000, true, 40, NULL);
	sn = tc_subscribe(&h, &nb, A, 0x4000, false, 0, NULL);
	h_require(ss && sn);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x4000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 false);
	t0 = uv_now(&h.loop);
	m = tc_recv(&h, &silent);
	tap_ok(is_inv(m, ss, ev, true) && m->invalidate->deadline_ms == 40,
	       "silent: Invalidate{needs_ack} with its own deadline");
	mmn__wire_free(m);
	tap_ok(expect(&h, &nb, MMN__V1__ENVELOPE__BODY_INVALIDATE, sn, ev, false),
	       "silent: non-blocking told");
	mmn__source_test_end(h.src, ev);
	tap_ok(expect(&h, &nb, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, sn, ev, false),
	       "silent: non-blocking ended at END, not held by the silent one");
	tap_is_int(ksub_blocking_at(&h, A), 1, "silent: BLOCKING while the deadline runs");
	while (ksub_blocking_at(&h, A) == 1 && uv_now(&h.loop) - t0 < 2000)
		run_once_bounded(&h, 100);
	t1 = uv_now(&h.loop);
	tap_ok(ksub_blocking_at(&h, A) == 0, "silent: BLOCKING cleared after the eviction");
	tap_ok(t1 - t0 >= 40 && t1 - t0 < 1000, "silent: cleared at the deadline (%llu ms)",
	       (unsigned long long)(t1 - t0));
	m = tc_recv(&h, &silent);
	revoked = BODY(m) == MMN__V1__ENVELOPE__BODY_REVOKED &&
		  m->revoked->reason == MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT && m->revoked->sub_id == ss &&
		  m->revoked->event_id == ev;
	mmn__wire_free(m);
	tap_ok(revoked, "silent: Revoked{timeout} pairs its Invalidate");
	tap_ok(tc_quiet(&h, &silent), "silent: and no InvalidateEnd after it");
	tap_is_int(mmn__source_test_ack_count(h.src, ev), 0, "silent: source never acked");
	tap_is_int(mmn__broker_pending_events(h.b), 0, "silent: nothing left in flight");
	mmn__admin_stats(h.b, &st);
	tap_ok(st.timeouts == 1 && st.evictions == 1, "silent: one timeout, one eviction counted");
	tc_close(&silent);
	tc_close(&nb);
	tap_is_int(h_fini(&h), 0, "silent: loop closes clean");
}

/*
 * Only the ksubs the refused event lists lose BLOCKING; a client that
 * disconnects counts as done; a range bridging a reaped ksub and a live
 * blocking one changes neither (ksubs are never merged): the reaped one
 * stays clear, the live one BLOCKING.
 */
static void test_scope(void)
{
	struct harness h;
	struct tclient c1, c2;
	uint64_t s1, s2, ev;
	const uint64_t far = A + 0x100000;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c1) == 0 && tc_hello(&h, &c2) == 0);
	s1 = tc_subscribe(&h, &c1, A, 0x2000, true, 1000, NULL);
	s2 = tc_subscribe(&h, &c2, far, 0x2000, true, 1000, NULL);
	h_require(s1 && s2 && mmn__source_test_nksubs(h.src) == 2);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 false);
	tap_ok(expect(&h, &c1, MMN__V1__ENVELOPE__BODY_INVALIDATE, s1, ev, true), "scope: refused, asked");
	tap_ok(tc_quiet(&h, &c2), "scope: the client of the other range is not told");
	mmn__source_test_end(h.src, ev);
	/* c1 goes away without acking: its pending ack counts as done. */
	tc_close(&c1);
	h_pump(&h, 5);
	tap_is_int(mmn__broker_pending_events(h.b), 0, "scope: a lost client's ack counts as done");
	tap_is_int(mmn__source_test_ack_count(h.src, ev), 0, "scope: source not acked");
	tap_is_int(ksub_blocking_at(&h, far), 1, "scope: an unlisted ksub keeps BLOCKING");
	tap_is_int(mmn__source_test_nksubs(h.src), 1, "scope: the lost client's ksub is gone");

	/* A reaped ksub, then a blocking range bridging it and a live one. */
	h_require(tc_hello(&h, &c1) == 0);
	s1 = tc_subscribe(&h, &c1, A, 0x2000, true, 1000, NULL);
	h_require(s1);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 false);
	tap_ok(expect(&h, &c1, MMN__V1__ENVELOPE__BODY_INVALIDATE, s1, ev, true), "scope: refused again");
	tc_ack(&c1, s1, ev);
	mmn__source_test_end(h.src, ev);
	tap_ok(expect(&h, &c1, MMN__V1__ENVELOPE__BODY_INVALIDATE_END, s1, ev, false),
	       "scope: acked and ended");
	tap_ok(ksub_blocking_at(&h, A) == 0 && ksub_blocking_at(&h, far) == 1,
	       "scope: only the listed ksub was cleared");
	tap_ok(tc_subscribe(&h, &c1, A + 0x2000, far - A - 0x2000, false, 0, NULL) != 0,
	       "scope: a non-blocking range bridges the reaped and the live ksub");
	tap_ok(mmn__source_test_nksubs(h.src) == 3 && ksub_blocking_at(&h, A) == 0 &&
		       ksub_blocking_at(&h, A + 0x2000) == 0 && ksub_blocking_at(&h, far) == 1,
	       "scope: the bridge gets its own ksub; the reaped one stays clear, the live one BLOCKING");
	tc_close(&c1);
	tc_close(&c2);
	h_pump(&h, 5);
	tap_is_int(mmn__source_test_nksubs(h.src), 0, "scope: no ksub left");
	tap_is_int(h_fini(&h), 0, "scope: loop closes clean");
}

/*
 * A granule-wide ksub: the reaper's refusal of memory next to two blocking
 * subs (in neither's range) asks both of them (clearing BLOCKING lets the
 * reaper zap the whole ksub), and BLOCKING goes only when both acked.
 */
static void test_granule(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, ev;

	h_init(&h, NULL);
	h.src->caps.ksub_granule = 0x10000;
	h_require(tc_hello(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, true, 1000, NULL);
	s2 = tc_subscribe(&h, &c, A + 0x8000, 0x1000, true, 1000, NULL);
	h_require(s1 && s2 && mmn__source_test_nksubs(h.src) == 1);
	ev = mmn__source_test_invalidate(h.src, getpid(), A + 0x4000, A + 0x5000,
					 MMN__V1__EVENT_TYPE__EVENT_UNMAP, false);
	h_require(ev != 0);
	tap_ok(expect(&h, &c, MMN__V1__ENVELOPE__BODY_INVALIDATE, s1, ev, true) &&
		       expect(&h, &c, MMN__V1__ENVELOPE__BODY_INVALIDATE, s2, ev, true),
	       "granule: both blocking subs of the ksub are asked, though the range is neither's");
	tc_ack(&c, s1, ev);
	h_pump(&h, 5);
	tap_is_int(ksub_blocking_at(&h, A), 1, "granule: one ack: still BLOCKING");
	tc_ack(&c, s2, ev);
	h_pump(&h, 5);
	tap_is_int(ksub_blocking_at(&h, A), 0, "granule: both acked: BLOCKING cleared for the reaper's retry");
	mmn__source_test_end(h.src, ev);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "granule: loop closes clean");
}

int main(void)
{
	test_refused_ack();
	test_ack_before_end();
	test_silent_evicted();
	test_scope();
	test_granule();
	return tap_done();
}
