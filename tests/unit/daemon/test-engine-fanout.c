/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fan-out memory rules (fanout.c): recipient arrays are pre-sized when a
 * subscription is linked; if a recipient still cannot be listed, every
 * overlapping subscription is resynchronised (none is skipped) before the
 * source is acked; closed recipients never point at a client.
 */
#include "harness.h"

#include "broker-internal.h"
#include "engine/fanout.h"
#include "engine/list.h"
#include "engine/recips.h"

#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static const uint64_t A = 0x100000;

#define NC 4

/* Every event, pooled or in flight, has room for every subscription. */
static bool reserve_holds(struct broker *b)
{
	list_for_each(pos, &b->event_pool)
	if (list_entry(pos, struct event, link)->cap < b->stats.subscriptions)
		return false;
	list_for_each(pos, &b->events)
	if (list_entry(pos, struct event, link)->cap < b->stats.subscriptions)
		return false;
	return b->recip_reserve >= b->stats.subscriptions;
}

/*
 * With the recipient array's growth failing, an event reaches every
 * overlapping subscription as an Invalidate{RESYNC}+End pair.
 */
static void check_nomem_resyncs(struct harness *h, struct tclient *c, const uint64_t *sub,
				const uint32_t *slot)
{
	MmnEnvelope *m;
	uint64_t ev;
	bool all = true;

	mmn__recips_fault = 1;
	ev = mmn__source_test_invalidate(h->src, getpid(), A, A + 0x50000, MMN__V1__EVENT_TYPE__EVENT_UNMAP, true);
	h_require(ev != 0);
	for (int i = 0; i < NC; i++) {
		uint64_t st = i < 3 ? A : A + 0x40000;

		m = tc_recv(h, &c[i]);
		all &= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->sub_id == sub[i] &&
		       m->invalidate->event == MMN__V1__EVENT_TYPE__EVENT_RESYNC && m->invalidate->start == st &&
		       m->invalidate->end == st + 0x10000 && !m->invalidate->needs_ack;
		mmn__wire_free(m);
		m = tc_recv(h, &c[i]);
		all &= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END && m->invalidate_end->sub_id == sub[i] &&
		       !(m->invalidate_end->seq & 1);
		mmn__wire_free(m);
		all &= tc_seq(&c[i], slot[i]) != 0 && (tc_seq(&c[i], slot[i]) & 1) == 0;
	}
	tap_ok(all, "nomem: every overlapping sub got an Invalidate{RESYNC}+End pair, slot moved on");
	tap_is_int(mmn__source_test_ack_count(h->src, ev), 1, "nomem: source acked once, after the resyncs");
	mmn__recips_fault = 0;
	mmn__source_test_end(h->src, ev);
	all = true;
	for (int i = 0; i < NC; i++)
		all &= tc_quiet(h, &c[i]);
	tap_ok(all, "nomem: the event's END sends nothing more");
}

/* Client 0 goes while it owes an ack for @ev: its recipient closes and forgets it. */
static void check_close_recipient(struct harness *h, struct tclient *c, const uint64_t *sub, uint64_t ev)
{
	MmnEnvelope *m;
	bool all;

	tc_close(&c[0]);
	h_pump(h, 5);
	all = !list_empty(&h->b->events);
	list_for_each(pos, &h->b->events)
	{
		struct event *e = list_entry(pos, struct event, link);

		for (uint32_t i = 0; i < e->nrecips; i++)
			if (e->recips[i].state == RECIP_CLOSED)
				all &= e->recips[i].c == NULL && e->recips[i].sub == NULL;
			else
				all &= e->recips[i].c != NULL;
	}
	tap_ok(all, "close: a closed recipient points at no client");
	tc_ack(&c[1], sub[1], ev);
	tc_ack(&c[3], sub[3], ev);
	h_pump(h, 5);
	tap_is_int(mmn__source_test_ack_count(h->src, ev), 1, "close: the others' acks release the source");
	mmn__source_test_end(h->src, ev);
	all = true;
	for (int i = 1; i < NC; i++) {
		m = tc_recv(h, &c[i]);
		all &= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END && m->invalidate_end->event_id == ev;
		mmn__wire_free(m);
	}
	tap_ok(all, "close: the others get InvalidateEnd");
}

static void test_nomem_resync(void)
{
	struct harness h;
	struct tclient c[NC];
	uint64_t sub[NC], ev;
	uint32_t slot[NC];
	MmnEnvelope *m;
	bool all = true;

	h_init(&h, NULL);
	/* Two blocking and one non-blocking on one range, one more elsewhere but overlapping the event. */
	for (int i = 0; i < NC; i++) {
		h_require(tc_hello(&h, &c[i]) == 0);
		sub[i] = tc_subscribe(&h, &c[i], i < 3 ? A : A + 0x40000, 0x10000, i != 2, 1000, &slot[i]);
		h_require(sub[i] != 0);
	}
	tap_ok(reserve_holds(h.b), "nomem: recipient arrays pre-sized for every subscription");

	check_nomem_resyncs(&h, c, sub, slot);

	/* Normal fan-out afterwards. */
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x50000, MMN__V1__EVENT_TYPE__EVENT_UNMAP, true);
	all = true;
	for (int i = 0; i < NC; i++) {
		m = tc_recv(&h, &c[i]);
		all &= BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->event_id == ev &&
		       m->invalidate->needs_ack == (i != 2);
		mmn__wire_free(m);
	}
	tap_ok(all, "nomem: afterwards every sub is notified normally");
	tap_ok(reserve_holds(h.b), "nomem: reserve holds with an event in flight");

	check_close_recipient(&h, c, sub, ev);
	for (int i = 1; i < NC; i++)
		tc_close(&c[i]);
	h_pump(&h, 5);
	tap_is_int(h_fini(&h), 0, "nomem: loop closes clean");
}

/* Acks are looked up by sub_id through the event's index, and only the owner's count. */
static void test_ack_index(void)
{
	enum { N = 32 };
	struct harness h;
	struct tclient c, o;
	uint64_t sub[N], osub, ev;
	MmnEnvelope *m;
	bool all = true, hashed = false;
	int got = 0;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0 && tc_hello(&h, &o) == 0);
	for (int i = 0; i < N; i++) {
		sub[i] = tc_subscribe(&h, &c, A + (uint64_t)i * 0x1000, 0x1000 * (1 + i % 3), true, 5000, NULL);
		h_require(sub[i] != 0);
	}
	osub = tc_subscribe(&h, &o, A + 0x100000, 0x1000, true, 5000, NULL);
	h_require(osub != 0);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x200000, MMN__V1__EVENT_TYPE__EVENT_UNMAP, true);
	for (int i = 0; i < N; i++) {
		m = tc_recv(&h, &c);
		got += BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->needs_ack;
		mmn__wire_free(m);
	}
	m = tc_recv(&h, &o);
	got += BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE;
	mmn__wire_free(m);
	tap_is_int(got, N + 1, "ack: every blocking sub notified with needs_ack");
	list_for_each(pos, &h.b->events)
	hashed |= list_entry(pos, struct event, link)->hashed;
	tap_ok(hashed, "ack: the event's recipients are indexed");
	/* Another client acking c's subs counts for nothing. */
	for (int i = 0; i < N; i++)
		tc_ack(&o, sub[i], ev);
	tc_ack(&o, osub, ev);
	h_pump(&h, 5);
	tap_ok(!mmn__source_test_acked(h.src, ev), "ack: acks for someone else's subs do not count");
	/* c acks in a scattered order, the last one releases the source. */
	for (int i = 0; i < N; i++) {
		tc_ack(&c, sub[(i * 7) % N], ev);
		h_pump(&h, 3);
		if (i < N - 1)
			all &= !mmn__source_test_acked(h.src, ev);
	}
	tap_ok(all, "ack: not acked before every blocking sub acked");
	tap_is_int(mmn__source_test_ack_count(h.src, ev), 1, "ack: acked once after the last ack");
	mmn__source_test_end(h.src, ev);
	tc_close(&c);
	tc_close(&o);
	h_pump(&h, 5);
	tap_is_int(h_fini(&h), 0, "ack: loop closes clean");
}

int main(void)
{
	test_nomem_resync();
	test_ack_index();
	return tap_done();
}
