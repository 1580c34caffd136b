/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Protocol v2 on the send path (daemon/clients/send.c): a v2 client's
 * Invalidates and InvalidateEnds of one loop iteration travel as EventBatch
 * records in as few packets as fit, an end folds into its own Invalidate
 * when it asks no ack, every other message keeps its place after the
 * records before it, AckMany acks (one by one, or in runs of the
 * Invalidates a client got in a row), and a v1 client beside it still gets
 * one message per packet.  Test source, raw clients, no sleeps.
 */
#include "harness.h"

#include "clients/send.h"
#include "event-record.h"

static const uint64_t A = 0x100000;

/* The next packet as it came (no unbatching), or NULL. */
static MmnEnvelope *recv_packet(struct harness *h, struct tclient *c)
{
	return tc_recv_fd(h, c->fd, NULL);
}

static const struct mmn_event_record *records(const MmnEnvelope *m, size_t *n)
{
	*n = m->event_batch->records.len / sizeof(struct mmn_event_record);
	return (const struct mmn_event_record *)(const void *)m->event_batch->records.data;
}

/* The next packet; its records in *@r and *@n when it is an EventBatch (else *@n = 0). */
static MmnEnvelope *recv_records(struct harness *h, struct tclient *c, const struct mmn_event_record **r,
				 size_t *n)
{
	MmnEnvelope *m = recv_packet(h, c);

	*n = 0;
	if (m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH)
		*r = records(m, n);
	return m;
}

/* Two non-blocking subs, one event over both ending at once, one more in flight: one packet, folded. */
static void test_fold(void)
{
	struct harness h;
	struct tclient c2, c1;
	uint64_t s1, s2, e1, e2;
	const struct mmn_event_record *r = NULL;
	MmnEnvelope *m;
	size_t n = 0;
	int v1_packets = 0;

	h_init(&h, NULL);
	h_require(tc_hello_v(&h, &c2, 2) == 0 && tc_hello(&h, &c1) == 0);
	tap_ok(c2.version == 2 && c1.version == 1, "fold: one v2 and one v1 client");
	s1 = tc_subscribe(&h, &c2, A, 0x2000, false, 0, NULL);
	s2 = tc_subscribe(&h, &c2, A + 0x2000, 0x2000, false, 0, NULL);
	h_require(s1 && s2 && tc_subscribe(&h, &c1, A, 0x4000, false, 0, NULL));
	e1 = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x4000, 0, true);
	mmn__source_test_end(h.src, e1);
	e2 = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	h_require(e1 && e2);
	m = recv_packet(&h, &c2);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH, "fold: the v2 client gets an EventBatch");
	if (m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH)
		r = records(m, &n);
	tap_is_int(n, 3, "fold: three records in one packet (two folded pairs and an Invalidate)");
	if (n == 3) {
		tap_ok(r[0].kind == MMN_RECORD_INVALIDATE_END && r[0].sub_id == s1 && r[0].event_id == e1 &&
			       r[0].start == A && r[0].end == A + 0x2000 && (r[0].seq & 1) && !(r[0].end_seq & 1),
		       "fold: s1's Invalidate and end of e1 in one record, seq odd then even");
		tap_ok(r[1].kind == MMN_RECORD_INVALIDATE_END && r[1].sub_id == s2 && r[1].event_id == e1 &&
			       r[1].start == A + 0x2000 && r[1].end == A + 0x4000,
		       "fold: s2's pair folded past s1's record");
		tap_ok(r[2].kind == MMN_RECORD_INVALIDATE && r[2].sub_id == s1 && r[2].event_id == e2 &&
			       !(r[2].flags & MMN_RECORD_NEEDS_ACK) && (r[2].flags & MMN_RECORD_BLOCKABLE),
		       "fold: e2 still in flight: a plain Invalidate");
	}
	mmn__wire_free(m);
	tap_ok(tc_quiet(&h, &c2), "fold: nothing else for the v2 client");
	while ((m = tc_recv(&h, &c1)) && ++v1_packets < 3)
		mmn__wire_free(m);
	mmn__wire_free(m);
	tap_ok(v1_packets == 3 && tc_quiet(&h, &c1), "fold: the v1 client got three messages in three packets");

	/* An end, then a reply: the reply comes after the record. */
	mmn__source_test_end(h.src, e2);
	tc_unsubscribe_send(&c2, s2);
	m = recv_packet(&h, &c2);
	n = 0;
	if (m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH)
		r = records(m, &n);
	tap_ok(n == 1 && r[0].kind == MMN_RECORD_END && r[0].sub_id == s1 && r[0].event_id == e2,
	       "order: the end of e2 as an END record");
	mmn__wire_free(m);
	m = recv_packet(&h, &c2);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_STATUS && m->status->error == 0,
	       "order: the Unsubscribe's Status after it");
	mmn__wire_free(m);
	tc_close(&c2);
	tc_close(&c1);
	tap_is_int(h_fini(&h), 0, "fold: loop closes clean");
}

/*
 * More records than one packet holds: a short first packet (the client
 * starts on it), full packets, then the rest.
 */
static void test_split(void)
{
	const size_t total = MMN_EVENT_BATCH_FIRST + MMN_EVENT_BATCH_MAX + 4;
	struct harness h;
	struct tclient c;
	size_t counts[4] = {0}, np = 0, folded = 0;
	uint64_t s;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h_require(tc_hello_v(&h, &c, 2) == 0);
	s = tc_subscribe(&h, &c, A, 0x1000, false, 0, NULL);
	h_require(s);
	for (size_t i = 0; i < total; i++)
		mmn__source_test_end(h.src, mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true));
	while (np < 4 && (m = recv_packet(&h, &c)) && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH) {
		const struct mmn_event_record *r = records(m, &counts[np]);

		for (size_t i = 0; i < counts[np]; i++)
			folded += r[i].kind == MMN_RECORD_INVALIDATE_END;
		np++;
		mmn__wire_free(m);
	}
	tap_ok(np == 3 && counts[0] == MMN_EVENT_BATCH_FIRST && counts[1] == MMN_EVENT_BATCH_MAX &&
		       counts[2] == 4,
	       "split: %zu folded pairs in packets of %d, %d and 4 records", total, MMN_EVENT_BATCH_FIRST,
	       MMN_EVENT_BATCH_MAX);
	tap_is_int(folded, (int)total, "split: every pair folded");
	tap_ok(tc_quiet(&h, &c), "split: nothing else");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "split: loop closes clean");
}

/* Blocking: needs_ack is never folded; AckMany acks; a v1 Ack still works on v2. */
static void test_ack_many(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, ev, ids[2], evs[2];
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *m;
	const struct mmn_event_record *r = NULL;
	size_t n = 0;

	h_init(&h, NULL);
	h_require(tc_hello_v(&h, &c, 2) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, true, 5000, NULL);
	s2 = tc_subscribe(&h, &c, A + 0x1000, 0x1000, true, 5000, NULL);
	h_require(s1 && s2);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, 0, true);
	m = recv_records(&h, &c, &r, &n);
	tap_ok(n == 2 && r[0].kind == MMN_RECORD_INVALIDATE && (r[0].flags & MMN_RECORD_NEEDS_ACK) &&
		       r[1].kind == MMN_RECORD_INVALIDATE && (r[1].flags & MMN_RECORD_NEEDS_ACK) &&
		       r[0].deadline_ms > 0,
	       "ack: both blocking Invalidates in one packet, needs_ack with a deadline");
	mmn__wire_free(m);
	ids[0] = s1, ids[1] = s2, evs[0] = evs[1] = ev;
	am.n_sub_ids = am.n_event_ids = 2;
	am.sub_ids = ids;
	am.event_ids = evs;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK_MANY;
	env.ack_many = &am;
	tc_send(&c, &env);
	for (int i = 0; i < 20 && !mmn__source_test_acked(h.src, ev); i++)
		h_pump(&h, 1);
	tap_ok(mmn__source_test_acked(h.src, ev), "ack: one AckMany acks the event for both subs");
	mmn__source_test_end(h.src, ev);
	m = recv_packet(&h, &c);
	n = 0;
	if (m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH)
		r = records(m, &n);
	tap_ok(n == 2 && r[0].kind == MMN_RECORD_END && r[1].kind == MMN_RECORD_END, "ack: two END records");
	mmn__wire_free(m);

	/* Mismatched lists are a protocol error: the client is dropped. */
	am.n_event_ids = 1;
	tc_send(&c, &env);
	m = recv_packet(&h, &c);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == -EBADMSG,
	       "ack: AckMany with lists of different length: Error(-EBADMSG)");
	mmn__wire_free(m);
	tap_ok(tc_eof(&h, c.fd), "ack: and the connection is closed");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "ack: loop closes clean");
}

static void pump_until_acked(struct harness *h, uint64_t ev)
{
	for (int i = 0; i < 20 && !mmn__source_test_acked(h->src, ev); i++)
		h_pump(h, 1);
}

static int blocking_acks(struct harness *h)
{
	struct admin_stats st;

	mmn__admin_stats(h->b, &st);
	return (int)st.blocking_acks;
}

/* An error for @c (after any EventBatch still on its way), then EOF: @what. */
static void expect_dropped(struct harness *h, struct tclient *c, int err, const char *what)
{
	MmnEnvelope *m = recv_packet(h, c);

	while (m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH) {
		mmn__wire_free(m);
		m = recv_packet(h, c);
	}

	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == err, "runs: %s",
	       what);
	mmn__wire_free(m);
	tap_ok(tc_eof(h, c->fd), "runs: and the connection is closed");
	tc_close(c);
}

/*
 * AckMany runs: two clients' blocking subs interleaved by address, A1 B1 A2
 * B2 A3, one event over all.  A's run of 3 from A1 acks A1, A2 and A3 (its
 * own Invalidates in the order it got them), none of B's; B's run of 2 ends
 * the wait.  A run from a sub of another client acks nothing.
 */
static void test_ack_runs(void)
{
	struct harness h;
	struct tclient a, bc;
	uint64_t sa[3], sb[2], ev;

	h_init(&h, NULL);
	h_require(tc_hello_runs(&h, &a, 2, true) == 0 && tc_hello_runs(&h, &bc, 2, true) == 0);
	tap_ok(a.ack_runs && bc.ack_runs, "runs: HelloReply says ack_runs to a v2 client asking it");
	for (int i = 0; i < 5; i++) {
		uint64_t id = tc_subscribe(&h, i % 2 ? &bc : &a, A + (uint64_t)i * 0x1000, 0x1000, true, 5000,
					   NULL);

		h_require(id);
		if (i % 2)
			sb[i / 2] = id;
		else
			sa[i / 2] = id;
	}
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x5000, 0, true);
	h_require(ev);
	h_pump(&h, 1);
	tc_ack_run(&bc, sa[0], ev, 3);
	tc_ack_run(&a, sa[0], ev, 3);
	h_pump(&h, 2);
	tap_ok(!mmn__source_test_acked(h.src, ev), "runs: A's run of 3 leaves B owing");
	tap_is_int(blocking_acks(&h), 3, "runs: it acked A1, A2, A3 and nothing of B's run from A1");
	tc_ack_run(&bc, sb[0], ev, 2);
	pump_until_acked(&h, ev);
	tap_ok(mmn__source_test_acked(h.src, ev), "runs: B's run of 2 ends the wait");
	tap_is_int(blocking_acks(&h), 5, "runs: five acks in all");
	mmn__source_test_end(h.src, ev);
	h_pump(&h, 1);

	tc_ack_run(&a, sa[0], ev, 0);
	expect_dropped(&h, &a, -EBADMSG, "a run of 0: Error(-EBADMSG)");
	tc_close(&bc);
	h_require(tc_hello_v(&h, &bc, 2) == 0);
	tap_ok(!bc.ack_runs, "runs: not offered to a client that did not ask");
	tc_ack_run(&bc, 1, 1, 1);
	expect_dropped(&h, &bc, -EPROTO, "runs without Hello.ack_runs: Error(-EPROTO)");
	tap_is_int(h_fini(&h), 0, "runs: loop closes clean");
}

/* Subscribe.no_end: the sub's events end in its slot, with no InvalidateEnd; a sub beside it still gets its
 * own. */
static void test_no_end(void)
{
	struct harness h;
	struct tclient c;
	uint32_t slot1 = 0;
	uint64_t s1, s2, ev;
	const struct mmn_event_record *r = NULL;
	MmnEnvelope *m;
	size_t n = 0;

	h_init(&h, NULL);
	h_require(tc_hello_v(&h, &c, 2) == 0);
	c.no_end = true;
	s1 = tc_subscribe(&h, &c, A, 0x1000, true, 5000, &slot1);
	c.no_end = false;
	s2 = tc_subscribe(&h, &c, A + 0x1000, 0x1000, true, 5000, NULL);
	h_require(s1 && s2);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, 0, true);
	m = recv_records(&h, &c, &r, &n);
	tap_ok(n == 2 && r[0].sub_id == s1 && r[1].sub_id == s2, "no_end: both subs get their Invalidate");
	mmn__wire_free(m);
	tap_ok(tc_seq(&c, slot1) % 2 == 1, "no_end: its slot is odd while the event is in flight");
	tc_ack(&c, s1, ev);
	tc_ack(&c, s2, ev);
	pump_until_acked(&h, ev);
	mmn__source_test_end(h.src, ev);
	m = recv_packet(&h, &c);
	n = 0;
	if (m && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH)
		r = records(m, &n);
	tap_ok(n == 1 && r[0].kind == MMN_RECORD_END && r[0].sub_id == s2,
	       "no_end: only the other sub gets an END");
	mmn__wire_free(m);
	tap_ok(tc_seq(&c, slot1) % 2 == 0, "no_end: its slot is even once the event ended");
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "no_end: loop closes clean");
}

/* A v1 client may not send AckMany. */
static void test_v1_ack_many(void)
{
	struct harness h;
	struct tclient c;
	uint64_t id = 1, ev = 1;
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *m;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);
	am.n_sub_ids = am.n_event_ids = 1;
	am.sub_ids = &id;
	am.event_ids = &ev;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK_MANY;
	env.ack_many = &am;
	tc_send(&c, &env);
	m = recv_packet(&h, &c);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == -EPROTO,
	       "v1: AckMany from a v1 client is Error(-EPROTO)");
	mmn__wire_free(m);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "v1: loop closes clean");
}

int main(void)
{
	test_fold();
	test_split();
	test_ack_many();
	test_v1_ack_many();
	test_ack_runs();
	test_no_end();
	return tap_done();
}
