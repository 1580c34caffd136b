/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mmn_subscribe_many and mmn_unsubscribe_many (client-lib/batch.c) against
 * the fake mmnd: per-item results in order, batches split by count and by
 * packet size, one request per item without batches (max_batch 0), a
 * whole-batch Error, callbacks of subs made by a batch (also invalidated
 * right after the reply), their resubscription after mmnd restarts, and
 * unsubscribing in batches.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake-server.h"
#include "lib/dispatch.h"
#include "mmn/mmn.h"
#include "tap.h"

#define BASE 0x10000000ull
#define PAGE 0x1000ull

struct rec {
	unsigned inval, ends, releases, resyncs;
	struct mmn_sub *last_sub;
};

static struct rec rec;

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *c = &rec;

	__atomic_add_fetch(&c->inval, 1, __ATOMIC_SEQ_CST);
	if (r->event == MMN_EVENT_RESYNC)
		__atomic_add_fetch(&c->resyncs, 1, __ATOMIC_SEQ_CST);
	c->last_sub = s;
	*(unsigned *)ud += 1;
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	__atomic_add_fetch(&rec.ends, 1, __ATOMIC_SEQ_CST);
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	rec.releases++;
}

static struct mmn_sub_opts opts = {
	.size = sizeof(opts),
	.flags = MMN_SUB_NONBLOCKING,
	.invalidate = on_inval,
	.invalidate_end = on_end,
	.release = on_release,
};

/* Per-item userdata: the invalidations each sub saw. */
static unsigned seen[2048];
static struct mmn_sub_opts item_opts[2048];

/* @n good items, one page each from BASE + @first pages on. */
static void good_items(struct mmn_sub_request *q, size_t n, unsigned first)
{
	for (size_t i = 0; i < n; i++) {
		item_opts[first + i] = opts;
		item_opts[first + i].userdata = &seen[first + i];
		q[i] = (struct mmn_sub_request){.start = BASE + (first + i) * PAGE, .length = PAGE};
		q[i].opts = &item_opts[first + i];
		q[i].sub = (struct mmn_sub *)&q[i]; /* garbage: must be overwritten */
		q[i].error = 12345;
	}
}

static void set_batch(struct fake_server *fs, uint32_t max_batch)
{
	pthread_mutex_lock(&fs->mu);
	fs->max_batch = max_batch;
	pthread_mutex_unlock(&fs->mu);
}

static struct mmn_client *connect_with(struct fake_server *fs, uint32_t max_batch)
{
	struct mmn_client *c = NULL;

	set_batch(fs, max_batch);
	tap_require(mmn_connect(fs->path, &c) == 0);
	return c;
}

/*
 * Remove the subs of @q in batches (one at a time, the Status replies would
 * fill the socket of a client that does not dispatch).
 */
static void unsubscribe_all(struct mmn_sub_request *q, size_t n)
{
	static struct mmn_sub *subs[1000];
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (q[i].sub)
			subs[k++] = q[i].sub;
	mmn_unsubscribe_many(subs, k, NULL);
}

static void test_args(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 16);
	struct mmn_sub_request q[1];
	int errs[1] = {7};

	good_items(q, 1, 0);
	tap_is_int(mmn_subscribe_many(NULL, q, 1), -EINVAL, "subscribe_many(NULL client)");
	tap_is_int(mmn_subscribe_many(c, NULL, 1), -EINVAL, "subscribe_many(NULL reqs, 1)");
	tap_is_int(mmn_subscribe_many(c, NULL, 0), 0, "subscribe_many of nothing: 0");
	tap_is_int(mmn_subscribe_many(c, q, (size_t)1 << 40), -EINVAL, "subscribe_many: n above INT_MAX");
	tap_is_int(mmn_unsubscribe_many(NULL, 1, NULL), -EINVAL, "unsubscribe_many(NULL, 1)");
	tap_is_int(mmn_unsubscribe_many(NULL, 0, NULL), 0, "unsubscribe_many of nothing: 0");
	q[0].sub = NULL;
	tap_is_int(mmn_unsubscribe_many(&q[0].sub, 1, errs), 0, "unsubscribe_many of a NULL handle: 0 removed");
	tap_is_int(errs[0], -EINVAL, "... its error is -EINVAL");
	mmn_disconnect(c);
}

/* Items failing locally, failing at mmnd and succeeding, interleaved: each gets its own result. */
static void test_items(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 64);
	struct mmn_sub_opts bad_flags = opts, no_cb = opts;
	struct {
		struct mmn_sub_opts o;
		uint64_t future;
	} big = {opts, 1};
	struct mmn_sub_request q[12];
	static const int want[12] = {0,	      -EINVAL, 0,	-EINVAL, -EPERM, -EOVERFLOW,
				     -EINVAL, -EINVAL, -EINVAL, -E2BIG,	 0,	 -EOVERFLOW};
	unsigned batches = fs_get(fs, &fs->nbatch), items = fs_get(fs, &fs->nbatch_items), subs, ok = 0;
	int n;

	bad_flags.flags = 0;
	no_cb.invalidate = NULL;
	big.o.size = sizeof(big);
	good_items(q, 12, 0);
	q[1].pid = -1;
	q[3].length = 0;
	q[4].length = 3 * PAGE; /* the fake mmnd fails it */
	q[5].start = UINT64_MAX - PAGE;
	q[6].opts = NULL;
	q[7].opts = &bad_flags;
	q[8].opts = &no_cb;
	q[9].opts = &big.o;
	q[11].start = 1ull << 56;
	pthread_mutex_lock(&fs->mu);
	fs->item_fail_length = 3 * PAGE;
	fs->item_fail_err = -EPERM;
	subs = fs->nsubs;
	pthread_mutex_unlock(&fs->mu);
	n = mmn_subscribe_many(c, q, 12);
	tap_is_int(n, 3, "subscribe_many: the number that succeeded");
	for (int i = 0; i < 12; i++) {
		ok += q[i].error == want[i] && !q[i].sub == !!want[i];
		if (q[i].error != want[i])
			tap_diag("item %d: error %d, expected %d", i, q[i].error, want[i]);
	}
	tap_is_int(ok, 12, "every item has its own result, a handle exactly when it succeeded");
	tap_is_int(fs_get(fs, &fs->nbatch) - batches, 1, "one round trip for the items that needed mmnd");
	tap_is_int(fs_get(fs, &fs->nbatch_items) - items, 4, "only the items valid locally were sent (4)");
	tap_is_int(fs_get(fs, &fs->nsubs) - subs, 3, "mmnd made 3 subscriptions");
	tap_ok(fs->subs[subs].start == q[0].start && fs->subs[subs + 1].start == q[2].start &&
		       fs->subs[subs + 2].start == q[10].start,
	       "mmnd got them in order");
	tap_ok(mmn_sub_userdata(q[10].sub) == &seen[10], "the handle carries its item's userdata");
	pthread_mutex_lock(&fs->mu);
	fs->item_fail_length = 0;
	pthread_mutex_unlock(&fs->mu);
	unsubscribe_all(q, 12);
	mmn_disconnect(c);
}

/* @n good items through a client with max_batch @mb: returns the SubscribeMany count. */
static unsigned subscribe_n(struct fake_server *fs, uint32_t mb, struct mmn_sub_request *q, size_t n,
			    const char *what)
{
	struct mmn_client *c = connect_with(fs, mb);
	unsigned b0 = fs_get(fs, &fs->nbatch), in_order = 0;
	int r;

	r = mmn_subscribe_many(c, q, n);
	tap_is_int(r, n, what);
	for (size_t i = 0; i < n && r == (int)n; i++)
		in_order += fs->subs[i].start == q[i].start;
	tap_is_int(in_order, n, "mmnd made them in order");
	unsubscribe_all(q, n);
	mmn_disconnect(c);
	return fs_get(fs, &fs->nbatch) - b0;
}

static void test_split(struct fake_server *fs)
{
	static struct mmn_sub_request q[1000];
	unsigned nb;

	good_items(q, 100, 0);
	nb = subscribe_n(fs, 7, q, 100, "100 items, max_batch 7: all succeed");
	tap_is_int(nb, 15, "split by count: 15 batches of at most 7");

	good_items(q, 1000, 0);
	nb = subscribe_n(fs, 256, q, 1000, "1000 small items, max_batch 256: all succeed");
	tap_is_int(nb, 9, "split by the library's cap: 9 batches of at most 123 (a reply must fit a packet)");

	/* Items of 37 bytes (35 and the field's tag and length): a packet holds 110. */
	good_items(q, 1000, 0);
	for (size_t i = 0; i < 1000; i++) {
		q[i].pid = INT32_MAX;
		q[i].start = (1ull << 55) + i * PAGE;
		q[i].length = 1ull << 54;
		item_opts[i].event_mask = 1ull << MMN_EVENT_RESYNC | 1;
		item_opts[i].ack_timeout_ms = 4000000000u;
	}
	pthread_mutex_lock(&fs->mu);
	fs->max_packet = 0;
	pthread_mutex_unlock(&fs->mu);
	nb = subscribe_n(fs, 1000, q, 1000, "1000 large items, max_batch 1000: all succeed");
	tap_is_int(nb, 10, "split by size: 10 batches of at most 110 (of 4 KiB)");
	tap_ok(fs->max_packet <= 4096 && fs->max_packet > 4096 - 64, "the largest packet is full, and fits (%u bytes)",
	       fs->max_packet);
	for (size_t i = 0; i < 1000; i++)
		item_opts[i] = opts;
}

/* max_batch 0: one Subscribe per item, the same results. */
static void test_fallback(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 0);
	struct mmn_sub_request q[20];
	struct mmn_sub *subs[20];
	unsigned b0 = fs_get(fs, &fs->nbatch), s0 = fs_get(fs, &fs->nsubscribe), u0 = fs_get(fs, &fs->nunsub);
	unsigned ub0 = fs_get(fs, &fs->nunsub_batch);
	int errs[20], n, ok = 0;

	good_items(q, 20, 0);
	q[5].length = 0;
	q[6].length = 3 * PAGE;
	pthread_mutex_lock(&fs->mu);
	fs->item_fail_length = 3 * PAGE; /* the fake mmnd's Subscribe does not fail it: only batches do */
	fs->item_fail_err = -EPERM;
	pthread_mutex_unlock(&fs->mu);
	n = mmn_subscribe_many(c, q, 20);
	tap_is_int(n, 19, "max_batch 0: 19 of 20 succeed");
	tap_is_int(q[5].error, -EINVAL, "the bad item fails as it would alone");
	tap_is_int(fs_get(fs, &fs->nbatch) - b0, 0, "no SubscribeMany sent to an mmnd without batches");
	tap_is_int(fs_get(fs, &fs->nsubscribe) - s0, 19, "one Subscribe per valid item");
	for (int i = 0; i < 20; i++)
		subs[i] = q[i].sub;
	n = mmn_unsubscribe_many(subs, 20, errs);
	tap_is_int(n, 19, "unsubscribe_many without batches: 19 removed");
	for (int i = 0; i < 20; i++)
		ok += errs[i] == (i == 5 ? -EINVAL : 0);
	tap_is_int(ok, 20, "each handle's result");
	tap_ok(fs_wait(fs, &fs->nunsub, u0 + 19), "one Unsubscribe per handle");
	tap_is_int(fs_get(fs, &fs->nunsub_batch) - ub0, 0, "no UnsubscribeMany");
	pthread_mutex_lock(&fs->mu);
	fs->item_fail_length = 0;
	pthread_mutex_unlock(&fs->mu);
	mmn_disconnect(c);
}

/* An Error answering a whole batch is each of its items' error; the other batches go on. */
static void test_batch_error(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 4);
	struct mmn_sub_request q[10];
	int n, ok = 0;

	good_items(q, 10, 0);
	pthread_mutex_lock(&fs->mu);
	fs->batch_error = -E2BIG;
	pthread_mutex_unlock(&fs->mu);
	n = mmn_subscribe_many(c, q, 10);
	tap_is_int(n, 6, "batch Error: 6 of 10 succeed");
	for (int i = 0; i < 10; i++)
		ok += i < 4 ? q[i].error == -E2BIG && !q[i].sub : !q[i].error && q[i].sub;
	tap_is_int(ok, 10, "the first batch's items all got its Error, the others succeeded");
	tap_is_int(fs_get(fs, &fs->nbatch_rejected), 1, "mmnd rejected one batch");
	unsubscribe_all(q, 10);
	mmn_disconnect(c);
}

static void test_unsubscribe_many(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 8);
	struct mmn_sub_request q[30];
	struct mmn_sub *subs[33];
	unsigned b0, u0, ends;
	int errs[33], n, ok = 0;

	good_items(q, 30, 0);
	tap_require(mmn_subscribe_many(c, q, 30) == 30);
	fs_invalidate(fs, 3, q[3].start, q[3].start + PAGE, MMN_EVENT_CLEAR, false);
	dispatch_until(c, &seen[3], 1);
	ends = rec.ends;
	tap_is_int(mmn_unsubscribe(q[7].sub), 0, "one removed alone first");
	for (int i = 0; i < 30; i++)
		subs[i] = q[i].sub;
	subs[30] = NULL;
	subs[31] = q[7].sub; /* removed before */
	subs[32] = q[2].sub; /* twice in the array */
	b0 = fs_get(fs, &fs->nunsub_batch);
	u0 = fs_get(fs, &fs->nunsub);
	n = mmn_unsubscribe_many(subs, 33, errs);
	tap_is_int(n, 29, "unsubscribe_many: 29 removed");
	for (int i = 0; i < 33; i++)
		ok += errs[i] == (i == 7 || i >= 31 ? -EALREADY : i == 30 ? -EINVAL : 0);
	tap_is_int(ok, 33, "errors: 0, -EALREADY (removed before, or earlier in the array), -EINVAL (NULL)");
	tap_is_int(rec.ends, ends + 1, "the outstanding invalidation was ended before it returned");
	tap_ok(fs_wait(fs, &fs->nunsub, u0 + 29), "mmnd was told of all 29");
	tap_is_int(fs_get(fs, &fs->nunsub_batch) - b0, 4, "in 4 UnsubscribeMany of at most 8");
	tap_is_int(mmn_unsubscribe_many(subs, 2, NULL), 0, "again, errors NULL: nothing removed");
	mmn_disconnect(c);
}

/* mmnd invalidates each new sub right after the batch's reply: each callback runs, each is acked. */
static void test_burst(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 16);
	struct mmn_sub_request q[50];
	unsigned acks = fs_get(fs, &fs->nacks), got = 0;

	memset(seen, 0, sizeof(seen));
	tap_require(mmn_start_thread(c) == 0);
	good_items(q, 50, 0);
	for (int i = 0; i < 50; i++)
		item_opts[i].flags = MMN_SUB_BLOCKING;
	pthread_mutex_lock(&fs->mu);
	fs->inval_after_subscribe = true;
	pthread_mutex_unlock(&fs->mu);
	tap_is_int(mmn_subscribe_many(c, q, 50), 50, "burst: 50 subscribed");
	tap_ok(fs_wait(fs, &fs->nacks, acks + 50), "every Invalidate sent right after the reply was acked");
	for (int i = 0; i < 50; i++)
		got += __atomic_load_n(&seen[i], __ATOMIC_SEQ_CST) == 1;
	tap_is_int(got, 50, "each reached its own sub's callback, once");
	pthread_mutex_lock(&fs->mu);
	fs->inval_after_subscribe = false;
	pthread_mutex_unlock(&fs->mu);
	unsubscribe_all(q, 50);
	for (int i = 0; i < 50; i++)
		item_opts[i] = opts;
	mmn_disconnect(c);
}

/* mmnd restarts: subs made by a batch are resubscribed, as single ones are; meanwhile -ENOTCONN. */
static void test_reconnect(struct fake_server *fs)
{
	struct mmn_client *c = connect_with(fs, 16);
	struct mmn_sub_request q[40], late[2];
	unsigned hellos, resub0, resyncs, hit = 0;
	int n;

	memset(seen, 0, sizeof(seen));
	good_items(q, 40, 0);
	tap_require(mmn_subscribe_many(c, q, 40) == 40);
	hellos = fs_get(fs, &fs->nhello);
	resub0 = fs_get(fs, &fs->nresubscribe);
	resyncs = rec.resyncs;
	fs_kill(fs);
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "connection loss reported");
	good_items(late, 2, 100);
	late[1].length = 0;
	n = mmn_subscribe_many(c, late, 2);
	tap_is_int(n, -ENOTCONN, "subscribe_many while disconnected: -ENOTCONN");
	tap_ok(late[0].error == -ENOTCONN && !late[0].sub && late[1].error == -EINVAL,
	       "... for each item not failed by its own arguments");
	dispatch_until(c, &rec.resyncs, resyncs + 40);
	tap_ok(fs_wait(fs, &fs->nhello, hellos + 1), "reconnected");
	tap_is_int(rec.resyncs - resyncs, 40, "one RESYNC per sub made by the batch");
	tap_is_int(fs_get(fs, &fs->nresubscribe) - resub0, 40, "each resubscribed");
	for (unsigned i = 0; i < 40; i++) {
		int k = -1;

		pthread_mutex_lock(&fs->mu);
		for (unsigned j = 0; j < fs->nsubs; j++)
			if (fs->subs[j].start == q[i].start && fs->subs[j].active)
				k = (int)j;
		pthread_mutex_unlock(&fs->mu);
		if (k < 0)
			continue;
		fs_invalidate(fs, (unsigned)k, q[i].start, q[i].start + PAGE, MMN_EVENT_CLEAR, false);
		hit += dispatch_reached(c, &seen[i], 2) && rec.last_sub == q[i].sub;
	}
	tap_is_int(hit, 40, "on the new connection, each sub's events reach its handle");
	unsubscribe_all(q, 40);
	mmn_disconnect(c);
}

/* Dispatch until the fake mmnd's *@counter reaches @n (5 s at most). */
static bool dispatch_until_fs(struct mmn_client *c, struct fake_server *fs, const unsigned *counter, unsigned n)
{
	for (int i = 0; i < DISPATCH_POLLS && fs_get(fs, counter) < n; i++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};

		poll(&p, 1, DISPATCH_POLL_MS);
		mmn_dispatch(c);
	}
	return fs_get(fs, counter) >= n;
}

/* Whether the client's requests wait, unread, at the paused fake mmnd. */
static bool requests_waiting(struct fake_server *fs)
{
	struct pollfd p = {.events = POLLIN};

	pthread_mutex_lock(&fs->mu);
	p.fd = fs->conn;
	pthread_mutex_unlock(&fs->mu);
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * A sub removed while its re-Subscribe (in a batch of @n, or alone with
 * max_batch 0) is in flight: mmnd's new subscription for it is removed when
 * the reply comes, the others get their RESYNC, and the resubscription
 * ends (subscribing works again), also when it was the only one.
 */
static void test_unsub_during_resub(struct fake_server *fs, uint32_t mb, unsigned n)
{
	struct mmn_client *c = connect_with(fs, mb);
	struct mmn_sub_request q[3];
	unsigned resyncs = rec.resyncs, u0, found = 0, hellos = fs_get(fs, &fs->nhello);
	struct mmn_sub *s = NULL;
	bool waiting = false;

	good_items(q, n, 0);
	tap_require(mmn_subscribe_many(c, q, n) == (int)n);
	pthread_mutex_lock(&fs->mu);
	fs->pause_after_hello = true;
	pthread_mutex_unlock(&fs->mu);
	fs_kill(fs);
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "connection loss reported");
	for (int i = 0; i < DISPATCH_POLLS && !waiting; i++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};

		poll(&p, 1, DISPATCH_POLL_MS);
		mmn_dispatch(c);
		/* After the HelloReply (the Hello itself was read): the re-Subscribes. */
		waiting = fs_get(fs, &fs->nhello) > hellos && requests_waiting(fs);
	}
	tap_ok(waiting, "reconnected; the re-Subscribes wait at mmnd (max_batch %u)", mb);
	tap_is_int(mmn_unsubscribe(q[0].sub), 0, "a sub removed while its re-Subscribe is in flight");
	u0 = fs_get(fs, &fs->nunsub);
	fs_resume(fs);
	tap_ok(dispatch_until_fs(c, fs, &fs->nunsub, u0 + 1), "mmnd's new subscription of it is unsubscribed");
	dispatch_until(c, &rec.resyncs, resyncs + n - 1);
	tap_is_int(rec.resyncs - resyncs, n - 1, "the others got their RESYNC");
	pthread_mutex_lock(&fs->mu);
	for (unsigned j = 0; j < fs->nsubs; j++)
		found += fs->subs[j].active && fs->subs[j].start == q[0].start;
	pthread_mutex_unlock(&fs->mu);
	tap_is_int(found, 0, "mmnd keeps no subscription of the removed sub");
	tap_is_int(mmn_subscribe(c, 0, BASE + 50 * PAGE, PAGE, &opts, &s), 0,
		   "subscribing works: the resubscription is over");
	q[0].sub = s;
	unsubscribe_all(q, n);
	mmn_disconnect(c);
}

int main(void)
{
	struct fake_server fs;

	tap_require(fs_start(&fs) == 0);
	test_args(&fs);
	test_items(&fs);
	test_split(&fs);
	test_fallback(&fs);
	test_batch_error(&fs);
	test_unsubscribe_many(&fs);
	test_burst(&fs);
	test_reconnect(&fs);
	test_unsub_during_resub(&fs, 16, 3);
	test_unsub_during_resub(&fs, 0, 1);
	fs_stop(&fs);
	return tap_done();
}
