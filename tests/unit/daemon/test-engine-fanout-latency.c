/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-client blocking-ack latency (fanout.c, as GetClientHistograms reads
 * it through admin.c): each Ack, and each subscription an AckMany run
 * settles, counts once in the acking client's histogram; a repeated ack,
 * another client's ack, a non-blocking recipient and an event that ends
 * without the ack count nothing.
 */
#include "harness.h"

#include "admin/admin.h"
#include "hist.h"

static const uint64_t A = 0x100000;

struct seen {
	uint64_t id;
	uint64_t count, sum_ns;
	unsigned max_bucket; /* the highest non-empty bucket */
};

static void count_cb(const struct admin_client *ac, void *ud)
{
	struct seen *s = ud;

	if (ac->id != s->id || !ac->ack_latency)
		return;
	s->count = 0;
	for (unsigned i = 0; i < MMN_HIST_BUCKETS; i++)
		if (ac->ack_latency->bucket[i]) {
			s->count += ac->ack_latency->bucket[i];
			s->max_bucket = i;
		}
	s->sum_ns = ac->ack_latency->sum_ns;
}

static struct seen latency(struct harness *h, const struct tclient *c)
{
	struct seen s = {.id = c->id, .count = UINT64_MAX};

	mmn__admin_foreach_client(h->b, count_cb, &s);
	return s;
}

/* Read @n Invalidates (or ends) of @c and drop them. */
static void drain(struct harness *h, struct tclient *c, int n)
{
	while (n-- > 0)
		mmn__wire_free(tc_recv(h, c));
}

static void test_ack(void)
{
	struct harness h;
	struct tclient c, o;
	uint64_t s0, s1, os, ev;
	struct seen got;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0 && tc_hello(&h, &o) == 0);
	s0 = tc_subscribe(&h, &c, A, 0x1000, true, 5000, NULL);
	s1 = tc_subscribe(&h, &c, A + 0x1000, 0x1000, true, 5000, NULL);
	os = tc_subscribe(&h, &o, A, 0x2000, false, 5000, NULL);
	h_require(s0 && s1 && os);
	tap_is_u64(latency(&h, &c).count, 0, "ack: nothing counted before an event");
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x2000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 true);
	drain(&h, &c, 2);
	drain(&h, &o, 1);
	tc_ack(&o, s0, ev); /* not o's subscription: refused, counts nowhere */
	tc_ack(&c, s0, ev);
	h_pump(&h, 5);
	got = latency(&h, &c);
	tap_is_u64(got.count, 1, "ack: one Ack, one latency");
	tap_ok(got.sum_ns > 0 && mmn__hist_index(got.sum_ns) == got.max_bucket,
	       "ack: counted in the bucket of its latency (%" PRIu64 " ns)", got.sum_ns);
	tc_ack(&c, s0, ev);
	h_pump(&h, 5);
	tap_is_u64(latency(&h, &c).count, 1, "ack: a repeated Ack counts nothing");
	tc_ack(&c, s1, ev);
	h_pump(&h, 5);
	tap_is_u64(latency(&h, &c).count, 2, "ack: the second subscription's Ack counts");
	tap_ok(mmn__source_test_acked(h.src, ev), "ack: the source was acked");
	tap_is_u64(latency(&h, &o).count, 0, "ack: the non-blocking client counts nothing");
	mmn__source_test_end(h.src, ev);
	drain(&h, &c, 2);

	/* The source goes ahead without c's ack: nothing counted. */
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 true);
	drain(&h, &c, 1);
	mmn__source_test_end(h.src, ev);
	h_pump(&h, 5);
	tap_is_u64(latency(&h, &c).count, 2, "ack: an event ended without the ack counts nothing");
	tc_close(&c);
	tc_close(&o);
	h_pump(&h, 5);
	tap_is_int(h_fini(&h), 0, "ack: loop closes clean");
}

static void test_ack_run(void)
{
	struct harness h;
	struct tclient c;
	uint64_t s[3], ev;

	h_init(&h, NULL);
	h_require(tc_hello_runs(&h, &c, 2, true) == 0 && c.ack_runs);
	for (int i = 0; i < 3; i++) {
		s[i] = tc_subscribe(&h, &c, A + (uint64_t)i * 0x1000, 0x1000, true, 5000, NULL);
		h_require(s[i] != 0);
	}
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x3000, MMN__V1__EVENT_TYPE__EVENT_UNMAP,
					 true);
	drain(&h, &c, 3);
	tc_ack_run(&c, s[0], ev, 3);
	h_pump(&h, 5);
	tap_ok(mmn__source_test_acked(h.src, ev), "run: one AckMany run settles all three");
	tap_is_u64(latency(&h, &c).count, 3, "run: three latencies, one per subscription settled");
	mmn__source_test_end(h.src, ev);
	tc_close(&c);
	h_pump(&h, 5);
	tap_is_int(h_fini(&h), 0, "run: loop closes clean");
}

int main(void)
{
	test_ack();
	test_ack_run();
	return tap_done();
}
