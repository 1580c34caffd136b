/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Protocol v2 in libmmn (client-lib/session.c, conn.c) against the fake
 * mmnd: an EventBatch's records become the callbacks their messages would
 * (a folded record: invalidate, then invalidate_end, with its two seqs), the
 * acks of one packet go back as one AckMany (in runs when mmnd takes them),
 * a malformed batch drops the connection, and with a v1 mmnd the library
 * acks one Ack per event.  The acks of one event's long run of Invalidates
 * wait for its end (up to MMN_ACK_HOLD_MS), packets read ahead keep the
 * client's fd readable, and with an mmnd that offers it the acks go
 * through the ack ring.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "event-record.h"
#include "fake-server.h"
#include "lib/dispatch.h"
#include "mmn/mmn.h"
#include "tap.h"

#define BASE 0x40000000ull
/* libmmn's MMN_ACK_WAIT_EVENTS and MMN_ACK_HOLD_MS (client-lib/client.h, not installed) */
#define MMN_ACK_WAIT_EVENTS_TEST 256
#define MMN_ACK_HOLD_MS_TEST	 2
#define PAGE 0x1000ull

struct rec {
	unsigned inval, ends;
	uint64_t inval_seq, end_seq, end_event;
	char order[16]; /* 'i' and 'e' as the callbacks ran */
	unsigned norder;
};

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *c = ud;

	c->inval++;
	c->inval_seq = r->seq;
	if (c->norder < sizeof(c->order) - 1)
		c->order[c->norder++] = 'i';
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *c = ud;

	c->ends++;
	c->end_seq = r->seq;
	c->end_event = r->event_id;
	if (c->norder < sizeof(c->order) - 1)
		c->order[c->norder++] = 'e';
}

static struct mmn_sub *subscribe(struct mmn_client *c, uint64_t start, uint32_t flags, struct rec *r)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = flags,
		.invalidate = on_inval,
		.invalidate_end = on_end,
		.userdata = r,
	};
	struct mmn_sub *s = NULL;

	tap_require(mmn_subscribe(c, 0, start, PAGE, &o, &s) == 0);
	return s;
}

static int send_batch(struct fake_server *fs, const struct mmn_event_record *recs, size_t n)
{
	Mmn__V1__EventBatch eb = MMN__V1__EVENT_BATCH__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int r;

	eb.records.data = (uint8_t *)recs;
	eb.records.len = n * sizeof(*recs);
	env.body_case = MMN__V1__ENVELOPE__BODY_EVENT_BATCH;
	env.event_batch = &eb;
	pthread_mutex_lock(&fs->mu);
	r = fs_send(fs, &env);
	pthread_mutex_unlock(&fs->mu);
	return r;
}

static struct mmn_event_record inval(uint64_t sub_id, uint64_t ev, uint64_t start, bool needs_ack)
{
	return (struct mmn_event_record){
		.sub_id = sub_id,
		.event_id = ev,
		.start = start,
		.end = start + PAGE,
		.seq = 1,
		.kind = MMN_RECORD_INVALIDATE,
		.event = MMN_EVENT_UNMAP,
		.flags = MMN_RECORD_BLOCKABLE | (needs_ack ? MMN_RECORD_NEEDS_ACK : 0),
		.deadline_ms = 1000,
	};
}

static void test_v2(struct fake_server *fs)
{
	struct rec rn = {0}, r1 = {0}, r2 = {0};
	struct mmn_client *c = NULL;
	struct mmn_event_record recs[3];
	unsigned acks0, many0;
	uint64_t id_n, id_1, id_2;

	fs->reply_version = 2;
	tap_require(mmn_connect(fs->path, &c) == 0);
	subscribe(c, BASE, MMN_SUB_NONBLOCKING, &rn);
	id_n = fs->subs[fs->nsubs - 1].id;
	subscribe(c, BASE + PAGE, MMN_SUB_BLOCKING, &r1);
	id_1 = fs->subs[fs->nsubs - 1].id;
	subscribe(c, BASE + 2 * PAGE, MMN_SUB_BLOCKING, &r2);
	id_2 = fs->subs[fs->nsubs - 1].id;
	acks0 = fs_get(fs, &fs->nacks);
	many0 = fs_get(fs, &fs->nack_many);

	recs[0] = inval(id_n, 7, BASE, false);
	recs[0].kind = MMN_RECORD_INVALIDATE_END;
	recs[0].seq = 3;
	recs[0].end_seq = 4;
	recs[1] = inval(id_1, 8, BASE + PAGE, true);
	recs[2] = inval(id_2, 8, BASE + 2 * PAGE, true);
	tap_is_int(send_batch(fs, recs, 3), 0, "v2: the fake mmnd sends one EventBatch of three records");
	tap_ok(dispatch_reached(c, &r2.inval, 1), "v2: every record delivered");
	tap_ok(rn.inval == 1 && rn.ends == 1 && strcmp(rn.order, "ie") == 0,
	       "v2: a folded record runs invalidate, then invalidate_end");
	tap_ok(rn.inval_seq == 3 && rn.end_seq == 4 && rn.end_event == 7,
	       "v2: with the Invalidate's seq, then the end's, for its event");
	tap_ok(r1.inval == 1 && r1.ends == 0, "v2: a plain record is an Invalidate only");
	tap_ok(fs_wait(fs, &fs->nacks, acks0 + 2), "v2: both blocking invalidations acked");
	tap_is_int(fs_get(fs, &fs->nack_many) - many0, 1, "v2: in one AckMany");
	tap_is_u64(fs->last_ack_sub, id_2, "v2: in order, the last names the last sub");

	recs[0] = inval(id_n, 9, BASE, false);
	recs[0].kind = 9;
	send_batch(fs, recs, 1);
	tap_is_int(dispatch_until_err(c), -EPROTO, "v2: a record of an unknown kind drops the connection (EPROTO)");
	mmn_disconnect(c);
}

/* The non-blocking sub's callback of test_ack_bound(): at its 290th event, was the ack sent? */
static struct fake_server *bound_fs;
static unsigned bound_acks0, bound_seen;
static bool bound_acked;

static int on_bound_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	if (++bound_seen == MMN_ACK_WAIT_EVENTS_TEST + 34)
		bound_acked = fs_wait(bound_fs, &bound_fs->nacks, bound_acks0 + 1);
	return 0;
}

/*
 * Acks wait for the rest of a burst, but not for ever: two blocking events
 * in two packets of one burst are acked by one AckMany; a blocking event
 * followed by 300 others is acked before the 290th of them is delivered.
 */
static void test_ack_bound(struct fake_server *fs)
{
	struct rec r1 = {0}, r2 = {0};
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_bound_inval};
	struct mmn_client *c = NULL;
	struct mmn_event_record recs[MMN_EVENT_BATCH_MAX];
	struct mmn_sub *n;
	uint64_t id_1, id_2, id_n;
	unsigned many0, acks0;

	fs->reply_version = 2;
	tap_require(mmn_connect(fs->path, &c) == 0);
	subscribe(c, BASE + 8 * PAGE, MMN_SUB_BLOCKING, &r1);
	id_1 = fs->subs[fs->nsubs - 1].id;
	subscribe(c, BASE + 9 * PAGE, MMN_SUB_BLOCKING, &r2);
	id_2 = fs->subs[fs->nsubs - 1].id;
	tap_require(mmn_subscribe(c, 0, BASE + 10 * PAGE, PAGE, &o, &n) == 0);
	id_n = fs->subs[fs->nsubs - 1].id;

	many0 = fs_get(fs, &fs->nack_many);
	acks0 = fs_get(fs, &fs->nacks);
	recs[0] = inval(id_1, 20, BASE + 8 * PAGE, true);
	send_batch(fs, recs, 1);
	recs[0] = inval(id_2, 21, BASE + 9 * PAGE, true);
	send_batch(fs, recs, 1);
	tap_ok(dispatch_reached(c, &r2.inval, 1) && fs_wait(fs, &fs->nacks, acks0 + 2),
	       "burst: two blocking events in two packets, both acked");
	tap_is_int(fs_get(fs, &fs->nack_many) - many0, 1, "burst: by one AckMany");

	bound_fs = fs;
	bound_acks0 = fs_get(fs, &fs->nacks);
	recs[0] = inval(id_1, 22, BASE + 8 * PAGE, true);
	for (size_t i = 1; i < MMN_EVENT_BATCH_MAX; i++)
		recs[i] = inval(id_n, 100 + i, BASE + 10 * PAGE, false);
	send_batch(fs, recs, MMN_EVENT_BATCH_MAX);
	for (unsigned k = 1; k < 6; k++) {
		for (size_t i = 0; i < MMN_EVENT_BATCH_MAX; i++)
			recs[i] = inval(id_n, 100 + k * MMN_EVENT_BATCH_MAX + i, BASE + 10 * PAGE, false);
		send_batch(fs, recs, MMN_EVENT_BATCH_MAX);
	}
	tap_ok(dispatch_reached(c, &bound_seen, 6 * MMN_EVENT_BATCH_MAX - 1), "bound: 335 events delivered");
	tap_ok(bound_acked, "bound: the blocking event was acked before the %d-th event after it",
	       MMN_ACK_WAIT_EVENTS_TEST + 34);
	mmn_disconnect(c);
}

static struct mmn_sub *later_sub;

static int on_later(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	later_sub = s;
	return on_inval(s, r, ud) + MMN_ACK_LATER;
}

static bool logged(const struct fake_server *fs, unsigned i, uint64_t sub_id, uint64_t ev, uint32_t run)
{
	return i < fs->nack_log && fs->ack_log[i].sub_id == sub_id && fs->ack_log[i].event_id == ev &&
	       fs->ack_log[i].run == run;
}

/*
 * AckMany runs: the Invalidates of one event delivered in a row and acked
 * at once go back as one entry, whether they asked an ack or not and
 * across one whose sub the client no longer knows; MMN_ACK_LATER breaks
 * the run and its ack follows alone.
 */
static void test_ack_runs(struct fake_server *fs)
{
	struct rec r[4] = {{0}};
	struct mmn_sub_opts o = {
		.size = sizeof(o), .flags = MMN_SUB_BLOCKING, .invalidate = on_later, .userdata = &r[2]};
	struct mmn_client *c = NULL;
	struct mmn_event_record recs[5];
	uint64_t id[4];
	unsigned acks0, log0;

	fs->reply_version = 2;
	fs->reply_ack_runs = true;
	tap_require(mmn_connect(fs->path, &c) == 0);
	for (int i = 0; i < 4; i++) {
		if (i == 2)
			tap_require(mmn_subscribe(c, 0, BASE + 20 * PAGE + i * PAGE, PAGE, &o, &later_sub) ==
				    0);
		else
			subscribe(c, BASE + 20 * PAGE + i * PAGE, MMN_SUB_BLOCKING, &r[i]);
		id[i] = fs->subs[fs->nsubs - 1].id;
		if (i >= 1)
			tap_ok(fs->last_no_end == (i == 2), "no_end: %s",
			       i == 2 ? "asked by a sub without invalidate_end"
				      : "not asked by a sub with one");
	}
	acks0 = fs_get(fs, &fs->nacks);
	log0 = fs_get(fs, &fs->nack_log);
	recs[0] = inval(id[0], 40, BASE + 20 * PAGE, true);
	recs[1] = inval(id[3] + 1000, 40, BASE + 20 * PAGE, true); /* a sub the client does not know */
	recs[2] = inval(id[1], 40, BASE + 21 * PAGE, true);
	recs[3] = inval(id[2], 40, BASE + 22 * PAGE, true);
	recs[4] = inval(id[3], 40, BASE + 23 * PAGE, true);
	send_batch(fs, recs, 5);
	tap_ok(dispatch_reached(c, &r[3].inval, 1) && fs_wait(fs, &fs->nacks, acks0 + 2),
	       "runs: five Invalidates delivered, two entries acked");
	tap_ok(logged(fs, log0, id[0], 40, 3), "runs: the first three (one of an unknown sub) as one run");
	tap_ok(logged(fs, log0 + 1, id[3], 40, 1), "runs: MMN_ACK_LATER broke it, the last one runs alone");
	tap_is_int(mmn_ack(later_sub, 40), 0, "runs: mmn_ack() of the one held");
	tap_ok(fs_wait(fs, &fs->nacks, acks0 + 3) && fs->last_ack_sub == id[2] && fs->last_ack_event == 40,
	       "runs: its ack follows on its own");

	log0 = fs_get(fs, &fs->nack_log);
	recs[0] = inval(id[0], 41, BASE + 20 * PAGE, false);
	recs[1] = inval(id[1], 41, BASE + 21 * PAGE, false);
	recs[2] = inval(id[3], 41, BASE + 23 * PAGE, true);
	send_batch(fs, recs, 3);
	tap_ok(dispatch_reached(c, &r[3].inval, 2) && fs_wait(fs, &fs->nack_log, log0 + 1),
	       "runs: an event asking one ack of three");
	tap_ok(logged(fs, log0, id[0], 41, 3), "runs: one run over all three, from the first");
	tap_is_int(fs_get(fs, &fs->bad_runs), 0, "runs: every run well formed");
	mmn_disconnect(c);
	fs->reply_ack_runs = false;
}

/* The callback of test_ack_hold(): slow at its 300th delivery, and at its 540th: was an AckMany sent? */
static struct fake_server *hold_fs;
static unsigned hold_seen, hold_many0;
static bool hold_spin, hold_acked;
static struct timespec hold_t0;

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static int on_hold(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	hold_seen++;
	if (hold_seen == MMN_ACK_WAIT_EVENTS_TEST)
		clock_gettime(CLOCK_MONOTONIC, &hold_t0);
	/* A consumer this slow holds the run past MMN_ACK_HOLD_MS (the run of 560 below). */
	if (hold_spin && hold_seen == 300)
		while (ms_since(&hold_t0) < MMN_ACK_HOLD_MS_TEST + 1)
			;
	if (hold_spin && hold_seen == 540)
		hold_acked = fs_wait(hold_fs, &hold_fs->nack_many, hold_many0 + 1);
	return 0;
}

/* @n Invalidates of event @ev for sub @id, asking acks, in packets of MMN_EVENT_BATCH_MAX. */
static void send_event(struct fake_server *fs, uint64_t id, uint64_t ev, unsigned n)
{
	struct mmn_event_record recs[MMN_EVENT_BATCH_MAX];

	for (unsigned sent = 0; sent < n;) {
		unsigned k = n - sent < MMN_EVENT_BATCH_MAX ? n - sent : MMN_EVENT_BATCH_MAX;

		for (unsigned i = 0; i < k; i++)
			recs[i] = inval(id, ev, BASE + 30 * PAGE, true);
		send_batch(fs, recs, k);
		sent += k;
	}
}

/*
 * One event of many Invalidates (a fan-out to many subs of this client):
 * its acks wait past MMN_ACK_WAIT_EVENTS while its Invalidates go on at the
 * head of the queue (mmnd acks the kernel only once it has them all), so
 * 336 of them go back as one run in one AckMany; but no longer than
 * MMN_ACK_HOLD_MS: with a slow callback, a run of 560 is sent at the
 * 512th, then the rest.
 */
static void test_ack_hold(struct fake_server *fs)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_BLOCKING, .invalidate = on_hold};
	struct mmn_client *c = NULL;
	struct mmn_sub *s;
	unsigned many0, log0;
	uint64_t id;

	fs->reply_version = 2;
	fs->reply_ack_runs = true;
	tap_require(mmn_connect(fs->path, &c) == 0);
	tap_require(mmn_subscribe(c, 0, BASE + 30 * PAGE, PAGE, &o, &s) == 0);
	id = fs->subs[fs->nsubs - 1].id;

	many0 = fs_get(fs, &fs->nack_many);
	log0 = fs_get(fs, &fs->nack_log);
	send_event(fs, id, 50, 6 * MMN_EVENT_BATCH_MAX);
	tap_ok(dispatch_reached(c, &hold_seen, 6 * MMN_EVENT_BATCH_MAX) &&
		       fs_wait(fs, &fs->nack_log, log0 + 1),
	       "hold: 336 Invalidates of one event delivered and acked");
	tap_ok(logged(fs, log0, id, 50, 6 * MMN_EVENT_BATCH_MAX) && fs_get(fs, &fs->nack_log) == log0 + 1,
	       "hold: as one run of 336, past the bound of %d", MMN_ACK_WAIT_EVENTS_TEST);
	tap_is_int(fs_get(fs, &fs->nack_many) - many0, 1, "hold: in one AckMany");

	hold_fs = fs;
	hold_seen = 0;
	hold_spin = true;
	hold_many0 = fs_get(fs, &fs->nack_many);
	log0 = fs_get(fs, &fs->nack_log);
	send_event(fs, id, 51, 10 * MMN_EVENT_BATCH_MAX);
	tap_ok(dispatch_reached(c, &hold_seen, 10 * MMN_EVENT_BATCH_MAX) &&
		       fs_wait(fs, &fs->nack_log, log0 + 2),
	       "hold bound: 560 Invalidates of one event delivered and acked");
	tap_ok(hold_acked, "hold bound: held %d ms at most: acks went before the 540th was delivered",
	       MMN_ACK_HOLD_MS_TEST);
	tap_ok(logged(fs, log0, id, 51, 2 * MMN_ACK_WAIT_EVENTS_TEST) &&
		       logged(fs, log0 + 1, id, 51, 10 * MMN_EVENT_BATCH_MAX - 2 * MMN_ACK_WAIT_EVENTS_TEST),
	       "hold bound: a run of %d at the next bound after the hold expired, then the rest",
	       2 * MMN_ACK_WAIT_EVENTS_TEST);
	hold_spin = false;
	mmn_disconnect(c);
	fs->reply_ack_runs = false;
}

/*
 * Packets read by one recvmmsg() but not handed up yet are not on the
 * socket any more: the client's fd must still say there is work.  The fake
 * mmnd sends an Invalidate right behind the SubscribeReply, so
 * mmn_subscribe() may read both and handle only the reply.
 */
static void test_rx_pending(struct fake_server *fs)
{
	struct rec r = {0};
	struct mmn_client *c = NULL;
	struct pollfd p;

	fs->reply_version = 2;
	fs->inval_after_subscribe = true;
	tap_require(mmn_connect(fs->path, &c) == 0);
	subscribe(c, BASE + 31 * PAGE, MMN_SUB_BLOCKING, &r);
	p = (struct pollfd){.fd = mmn_get_fd(c), .events = POLLIN};
	tap_is_int(poll(&p, 1, 5000), 1,
		   "rx: the fd is readable while the Invalidate behind the reply waits");
	tap_ok(dispatch_reached(c, &r.inval, 1), "rx: and it is delivered");
	fs->inval_after_subscribe = false;
	mmn_disconnect(c);
}

/*
 * With an mmnd that offers the ack ring, the batched acks go through it and
 * no AckMany is sent (the dispatch thread allocates no socket buffer for
 * them); when the ring is full they go as AckMany, and none is lost or
 * doubled.
 */
static void test_ack_ring(struct fake_server *fs)
{
	const unsigned nev = MMN_ACK_RING_ENTRIES + 200;
	struct mmn_event_record recs[MMN_EVENT_BATCH_MAX];
	struct mmn_client *c = NULL;
	struct rec r = {0};
	unsigned acks0, many0, ring0, ring1;
	uint64_t id;

	fs->reply_version = 2;
	fs->reply_ack_runs = true;
	fs->reply_ack_ring = true;
	tap_require(mmn_connect(fs->path, &c) == 0);
	subscribe(c, BASE + 32 * PAGE, MMN_SUB_BLOCKING, &r);
	id = fs->subs[fs->nsubs - 1].id;
	acks0 = fs_get(fs, &fs->nacks);
	many0 = fs_get(fs, &fs->nack_many);
	ring0 = fs_get(fs, &fs->nring_entries);
	recs[0] = inval(id, 60, BASE + 32 * PAGE, true);
	send_batch(fs, recs, 1);
	tap_ok(dispatch_reached(c, &r.inval, 1) && fs_wait(fs, &fs->nacks, acks0 + 1),
	       "ring: the Invalidate is delivered and acked");
	tap_ok(fs_get(fs, &fs->nring_entries) - ring0 == 1 && fs_get(fs, &fs->nack_many) == many0,
	       "ring: through the ack ring, with no AckMany");
	tap_ok(fs->last_ack_sub == id && fs->last_ack_event == 60,
	       "ring: the entry names the sub and the event");

	fs_pause_ring(fs, true);
	acks0 = fs_get(fs, &fs->nacks);
	many0 = fs_get(fs, &fs->nack_many);
	ring0 = fs_get(fs, &fs->nring_entries);
	for (unsigned sent = 0; sent < nev;) {
		unsigned k = nev - sent < MMN_EVENT_BATCH_MAX ? nev - sent : MMN_EVENT_BATCH_MAX;

		for (unsigned i = 0; i < k; i++)
			recs[i] = inval(id, 100 + sent + i, BASE + 32 * PAGE, true);
		send_batch(fs, recs, k);
		sent += k;
	}
	tap_ok(dispatch_reached(c, &r.inval, 1 + nev) && fs_wait(fs, &fs->nack_many, many0 + 1),
	       "ring full: %u events delivered, the acks that do not fit go as AckMany", nev);
	fs_pause_ring(fs, false);
	tap_ok(fs_wait(fs, &fs->nacks, acks0 + nev), "ring full: every event acked once the ring is taken");
	ring1 = fs_get(fs, &fs->nring_entries) - ring0;
	tap_ok(fs_get(fs, &fs->nacks) - acks0 == nev && ring1 > 0 && ring1 <= MMN_ACK_RING_ENTRIES,
	       "ring full: each once, %u through the ring", ring1);
	tap_is_int(fs_get(fs, &fs->bad_runs), 0, "ring: every entry well formed");
	fs->reply_ack_ring = false;
	fs->reply_ack_runs = false;
	mmn_disconnect(c);
}

static void test_v1(struct fake_server *fs)
{
	struct rec r1 = {0}, r2 = {0};
	struct mmn_client *c = NULL;
	unsigned acks0, many0;

	fs->reply_version = 1;
	tap_require(mmn_connect(fs->path, &c) == 0);
	subscribe(c, BASE + 4 * PAGE, MMN_SUB_BLOCKING, &r1);
	subscribe(c, BASE + 5 * PAGE, MMN_SUB_BLOCKING, &r2);
	acks0 = fs_get(fs, &fs->nacks);
	many0 = fs_get(fs, &fs->nack_many);
	fs_invalidate(fs, fs->nsubs - 2, BASE + 4 * PAGE, BASE + 5 * PAGE, MMN_EVENT_UNMAP, true);
	fs_invalidate(fs, fs->nsubs - 1, BASE + 5 * PAGE, BASE + 6 * PAGE, MMN_EVENT_UNMAP, true);
	tap_ok(dispatch_reached(c, &r2.inval, 1) && r1.inval == 1, "v1: both Invalidates delivered");
	tap_ok(fs_wait(fs, &fs->nacks, acks0 + 2), "v1: both acked");
	tap_is_int(fs_get(fs, &fs->nack_many) - many0, 0, "v1: as plain Acks, no AckMany");
	{
		struct mmn_event_record rec = inval(fs->subs[fs->nsubs - 1].id, 99, BASE + 5 * PAGE, false);

		send_batch(fs, &rec, 1);
		tap_is_int(dispatch_until_err(c), -EPROTO, "v1: an EventBatch on a v1 connection drops it (EPROTO)");
	}
	mmn_disconnect(c);
}

int main(void)
{
	struct fake_server fs;

	tap_require(fs_start(&fs) == 0);
	test_v2(&fs);
	test_ack_bound(&fs);
	test_v1(&fs);
	tap_is_int(fs_get(&fs, &fs.bad_runs), 0, "no runs to an mmnd that did not offer them");
	test_ack_runs(&fs);
	test_ack_hold(&fs);
	test_rx_pending(&fs);
	test_ack_ring(&fs);
	fs_stop(&fs);
	return tap_done();
}
