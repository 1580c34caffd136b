/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SubscribeMany and UnsubscribeMany (daemon/clients/rpc.c, engine/sub.c):
 * per-item results in order, the batch limit, one reply that precedes every
 * Invalidate of the new subscriptions (a batch waits while a target is
 * invalidating), per-client limits counted across the batch, a client lost
 * while its batch waits, and UnsubscribeMany answered once every item left.
 */
#include "harness.h"

#define B  MMN__V1__SUB_FLAG__SUB_BLOCKING
#define NB MMN__V1__SUB_FLAG__SUB_NONBLOCKING

static const uint64_t A = 0x100000;

/* Send SubscribeMany of @n page-sized items at A + page * i (flags[i], length 0 where @zero[i]). */
static int send_many(struct tclient *c, uint32_t n, const uint32_t *flags, const bool *zero)
{
	Mmn__V1__Subscribe items[MMN_MAX_BATCH + 1], *ip[MMN_MAX_BATCH + 1];
	Mmn__V1__SubscribeMany m = MMN__V1__SUBSCRIBE_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	for (uint32_t i = 0; i < n; i++) {
		mmn__v1__subscribe__init(&items[i]);
		items[i].start = A + 0x1000 * (uint64_t)i;
		items[i].length = zero && zero[i] ? 0 : 0x1000;
		items[i].flags = flags ? flags[i] : NB;
		ip[i] = &items[i];
	}
	m.n_items = n;
	m.items = ip;
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY;
	env.subscribe_many = &m;
	return tc_send(c, &env);
}

static int send_unsub_many(struct tclient *c, const uint64_t *ids, uint32_t n)
{
	Mmn__V1__UnsubscribeMany m = MMN__V1__UNSUBSCRIBE_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	m.n_sub_ids = n;
	m.sub_ids = (uint64_t *)ids;
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY;
	env.unsubscribe_many = &m;
	return tc_send(c, &env);
}

static bool is_many_reply(const MmnEnvelope *m, size_t n)
{
	return m && m->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY &&
	       m->subscribe_many_reply->n_results == n;
}

static void test_results(void)
{
	uint32_t flags[5] = {NB, B, NB, 7, NB};
	bool zero[5] = {false, false, true, false, false};
	struct harness h;
	struct tclient c;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h.src->caps.ksub_granule = 0x10000;
	h_require(tc_hello(&h, &c) == 0);
	h_require(send_many(&c, 5, flags, zero) == 0);
	m = tc_recv(&h, &c);
	tap_ok(is_many_reply(m, 5), "results: one SubscribeManyReply with 5 results");
	if (is_many_reply(m, 5)) {
		Mmn__V1__SubscribeResult **r = m->subscribe_many_reply->results;

		tap_ok(!r[0]->error && !r[1]->error && !r[4]->error && r[0]->reply && r[1]->reply && r[4]->reply,
		       "results: the good items are subscribed");
		tap_ok(r[2]->error == -EINVAL && r[3]->error == -EINVAL && !r[2]->reply && !r[3]->reply,
		       "results: length 0 and bad flags fail alone (-EINVAL), in place");
		tap_ok(r[0]->reply->sub_id < r[1]->reply->sub_id && r[1]->reply->sub_id < r[4]->reply->sub_id &&
			       r[0]->reply->seq_slot != r[1]->reply->seq_slot,
		       "results: in order, each with its own slot");
	}
	mmn__wire_free(m);
	tap_is_int(mmn__source_test_nksubs(h.src), 1, "results: three pages of one granule, one ksub");
	h_require(send_many(&c, MMN_MAX_BATCH + 1, NULL, NULL) == 0);
	m = tc_recv(&h, &c);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == -E2BIG,
	       "results: over max_batch: Error(-E2BIG)");
	mmn__wire_free(m);
	h_require(send_many(&c, 0, NULL, NULL) == 0);
	m = tc_recv(&h, &c);
	tap_ok(is_many_reply(m, 0), "results: an empty batch gets an empty reply");
	mmn__wire_free(m);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "results: loop closes clean");
}

/* Per-client limit: the items past it fail, counting the batch's own. */
static void test_limit(void)
{
	struct broker_options o;
	struct harness h;
	struct tclient c;
	MmnEnvelope *m;
	int ok = 0, nospc = 0;

	mmn__broker_options_default(&o);
	o.max_subs = 4;
	h_init(&h, &o);
	h_require(tc_hello(&h, &c) == 0);
	h_require(tc_subscribe(&h, &c, A + 0x100000, 0x1000, false, 0, NULL) != 0);
	h_require(send_many(&c, 6, NULL, NULL) == 0);
	m = tc_recv(&h, &c);
	for (size_t i = 0; is_many_reply(m, 6) && i < 6; i++) {
		ok += m->subscribe_many_reply->results[i]->error == 0 && i < 3;
		nospc += m->subscribe_many_reply->results[i]->error == -ENOSPC && i >= 3;
	}
	tap_ok(ok == 3 && nospc == 3, "limit: 1 + 3 fit in max_subs 4, the last 3 items get -ENOSPC");
	mmn__wire_free(m);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "limit: loop closes clean");
}

/*
 * With an invalidation in flight on the target the batch waits; after the
 * END its reply comes before any Invalidate of the new subscriptions.
 */
static void test_reply_first(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s0, ev;
	MmnEnvelope *m;
	bool reply = false, early = false;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	s0 = tc_subscribe(&h, &c, A + 0x100000, 0x1000, false, 0, NULL);
	h_require(s0 != 0);
	ev = mmn__source_test_invalidate(h.src, getpid(), A + 0x100000, A + 0x101000, 0, false);
	m = tc_recv(&h, &c);
	h_require(m && m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE);
	mmn__wire_free(m);
	h_require(send_many(&c, 3, NULL, NULL) == 0);
	tap_ok(tc_quiet(&h, &c), "reply first: no reply while the target is invalidating");
	mmn__source_test_end(h.src, ev);
	/* A new event over the new ranges right away: it may only follow the reply. */
	h_pump(&h, 2);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x3000, 0, false);
	for (int i = 0; i < 6 && (m = tc_recv(&h, &c)); i++) {
		if (m->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY)
			reply = true;
		if (m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->sub_id != s0 && !reply)
			early = true;
		mmn__wire_free(m);
		if (reply && i >= 4)
			break;
	}
	tap_ok(reply && !early, "reply first: the reply precedes every Invalidate of the batch's subs");
	mmn__source_test_end(h.src, ev);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "reply first: loop closes clean");
}

/* The client goes while its batch waits: the batch is dropped, nothing leaks (ASan, valgrind). */
static void test_lost_while_waiting(void)
{
	struct harness h;
	struct tclient c, other;
	uint64_t s0, ev;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0 && tc_hello(&h, &other) == 0);
	s0 = tc_subscribe(&h, &other, A, 0x1000, true, 1000, NULL);
	h_require(s0 != 0);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	m = tc_recv(&h, &other);
	h_require(m && m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE);
	mmn__wire_free(m);
	h_require(send_many(&c, 4, NULL, NULL) == 0);
	h_pump(&h, 2);
	tc_close(&c);
	h_pump(&h, 5);
	tc_ack(&other, s0, ev);
	h_pump(&h, 5);
	mmn__source_test_end(h.src, ev);
	m = tc_recv(&h, &other);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE_END, "lost: the other client's pair ends");
	mmn__wire_free(m);
	tap_is_int(mmn__source_test_nksubs(h.src), 1, "lost: the dropped batch created nothing");
	tc_close(&other);
	tap_is_int(h_fini(&h), 0, "lost: loop closes clean");
}

static void test_unsubscribe_many(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, ids[4], ev;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, false, 0, NULL);
	s2 = tc_subscribe(&h, &c, A + 0x1000, 0x1000, false, 0, NULL);
	h_require(s1 && s2);
	ids[0] = s1, ids[1] = 999999, ids[2] = s2, ids[3] = s1;
	h_require(send_unsub_many(&c, ids, 4) == 0);
	m = tc_recv(&h, &c);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY_REPLY &&
		       m->unsubscribe_many_reply->n_errors == 4 && m->unsubscribe_many_reply->errors[0] == 0 &&
		       m->unsubscribe_many_reply->errors[1] == -ENOENT && m->unsubscribe_many_reply->errors[2] == 0 &&
		       m->unsubscribe_many_reply->errors[3] == -ENOENT,
	       "unsubscribe many: per item 0 or -ENOENT (unknown, already gone), in order");
	mmn__wire_free(m);
	tap_is_int(mmn__source_test_nksubs(h.src), 0, "unsubscribe many: the ksubs went with them");

	s1 = tc_subscribe(&h, &c, A, 0x1000, false, 0, NULL);
	h_require(s1 != 0);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, false);
	mmn__wire_free(tc_recv(&h, &c));
	h_require(send_unsub_many(&c, &s1, 1) == 0);
	tap_ok(tc_quiet(&h, &c), "unsubscribe many: in flight: the reply waits");
	mmn__source_test_end(h.src, ev);
	m = tc_recv(&h, &c);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE_END, "unsubscribe many: the pair ends first");
	mmn__wire_free(m);
	m = tc_recv(&h, &c);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY_REPLY &&
		       m->unsubscribe_many_reply->n_errors == 1 && m->unsubscribe_many_reply->errors[0] == 0,
	       "unsubscribe many: then the reply");
	mmn__wire_free(m);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "unsubscribe many: loop closes clean");
}

int main(void)
{
	test_results();
	test_limit();
	test_reply_first();
	test_lost_while_waiting();
	test_unsubscribe_many();
	return tap_done();
}
