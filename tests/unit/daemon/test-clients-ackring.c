/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The ack ring (daemon/clients/ackring.c, proto/ack-ring.h): a v2 client
 * that asks for it gets the ring and its doorbell with HelloReply; entries
 * it publishes ack like AckMany items, when the doorbell rings and, without
 * a ring of the doorbell, before the next packet of that client is handled;
 * a malformed ring is that client's protocol error and no other client's.
 * Test source, raw clients, no sleeps.
 */
#include "harness.h"

static const uint64_t A = 0x100000;

static void pump_until_acked(struct harness *h, uint64_t ev)
{
	for (int i = 0; i < 20 && !mmn__source_test_acked(h->src, ev); i++)
		h_pump(h, 1);
}

/* Drain what @c was sent (the Invalidates' EventBatch) so later packets are replies. */
static void drain(struct harness *h, struct tclient *c)
{
	MmnEnvelope *m;

	h_pump(h, 2);
	while ((m = tc_recv_fd(h, c->fd, NULL)) && m->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH) {
		mmn__wire_free(m);
		if (tc_quiet(h, c))
			return;
	}
	mmn__wire_free(m);
}

static void test_offer(void)
{
	struct harness h;
	struct tclient c, old;

	h_init(&h, NULL);
	tap_is_int(tc_hello_ring(&h, &c), 0,
		   "offer: HelloReply to Hello.ack_ring carries the ring and a doorbell");
	tap_ok(c.ring && c.ring->magic == MMN_ACK_RING_MAGIC && c.ring->version == MMN_ACK_RING_VERSION &&
		       c.ring->nentries == MMN_ACK_RING_ENTRIES && c.ring->head == 0 && c.ring->tail == 0,
	       "offer: the ring's header");
	h_require(tc_hello_v(&h, &old, 2) == 0);
	tap_ok(old.page && !old.ring, "offer: a client that does not ask gets no ring (one descriptor)");
	tc_close(&old);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "offer: loop closes clean (the doorbell's handle too)");
}

/* Entries ack as AckMany items: by the doorbell, and a run of two. */
static void test_ack(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s1, s2, ev;

	h_init(&h, NULL);
	h_require(tc_hello_ring(&h, &c) == 0);
	s1 = tc_subscribe(&h, &c, A, 0x1000, true, 5000, NULL);
	s2 = tc_subscribe(&h, &c, A + 0x1000, 0x1000, true, 5000, NULL);
	h_require(s1 && s2);

	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	drain(&h, &c);
	tap_ok(!mmn__source_test_acked(h.src, ev), "ack: the event waits for the client");
	tc_ring_ack(&c, s1, ev, 1, true);
	pump_until_acked(&h, ev);
	tap_ok(mmn__source_test_acked(h.src, ev), "ack: an entry and the doorbell ack it");
	tap_is_int(c.ring->tail, 1, "ack: mmnd published how far it took");
	mmn__source_test_end(h.src, ev);

	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, 0, true);
	drain(&h, &c);
	tc_ring_ack(&c, s1, ev, 2, true);
	pump_until_acked(&h, ev);
	tap_ok(mmn__source_test_acked(h.src, ev), "ack: a run of 2 acks both Invalidates of the event");
	mmn__source_test_end(h.src, ev);

	/* No doorbell: the entry still comes before the client's next packet. */
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	drain(&h, &c);
	tc_ring_ack(&c, s1, ev, 1, false);
	h_pump(&h, 3);
	tap_ok(!mmn__source_test_acked(h.src, ev), "ack: without the doorbell, nothing reads the ring");
	/* An AckMany of an event long over: no reply, and nothing else to read the ring. */
	tap_is_int(tc_ack_run(&c, s2, ev - 1, 1), 0, "ack: then a packet (a late AckMany)");
	h_pump(&h, 3);
	tap_ok(mmn__source_test_acked(h.src, ev), "ack: the entry was taken when that packet came");
	mmn__source_test_end(h.src, ev);
	tc_close(&c);
	tap_is_int(h_fini(&h), 0, "ack: loop closes clean");
}

/* A malformed ring drops its client; another client's ack still counts. */
static void bad_ring(void (*spoil)(struct tclient *), const char *what)
{
	struct harness h;
	struct tclient bad, good;
	uint64_t sb, sg, ev;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h_require(tc_hello_ring(&h, &bad) == 0 && tc_hello_ring(&h, &good) == 0);
	sb = tc_subscribe(&h, &bad, A, 0x1000, true, 5000, NULL);
	sg = tc_subscribe(&h, &good, A, 0x1000, true, 5000, NULL);
	h_require(sb && sg);
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	drain(&h, &bad);
	drain(&h, &good);
	spoil(&bad);
	h_pump(&h, 3);
	m = tc_recv_fd(&h, bad.fd, NULL);
	tap_ok(m && m->body_case == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == -EBADMSG,
	       "bad ring: %s: Error(-EBADMSG)", what);
	mmn__wire_free(m);
	tap_ok(tc_eof(&h, bad.fd), "bad ring: %s: and the connection is closed", what);
	tc_ring_ack(&good, sg, ev, 1, true);
	pump_until_acked(&h, ev);
	tap_ok(mmn__source_test_acked(h.src, ev), "bad ring: %s: the other client's ack counts", what);
	mmn__source_test_end(h.src, ev);
	tc_close(&bad);
	tc_close(&good);
	tap_ok(h_fini(&h) == 0, "bad ring: %s: loop closes clean", what);
}

static void head_too_far(struct tclient *c)
{
	const uint64_t one = 1;

	__atomic_store_n(&c->ring->head, MMN_ACK_RING_ENTRIES + 1, __ATOMIC_RELEASE);
	h_require(write(c->doorbell, &one, sizeof(one)) == sizeof(one));
}

static void run_of_zero(struct tclient *c)
{
	tc_ring_ack(c, 1, 1, 0, true);
}

static void reserved_set(struct tclient *c)
{
	tc_ring_ack(c, 1, 1, 1, false);
	c->ring->e[0].reserved = 1; /* after the publish: mmnd reads the entry at the doorbell */
	tc_ring_ack(c, 1, 1, 1, true);
}

int main(void)
{
	test_offer();
	test_ack();
	bad_ring(head_too_far, "more entries than the ring holds");
	bad_ring(run_of_zero, "a run of 0");
	bad_ring(reserved_set, "a reserved field set");
	return tap_done();
}
