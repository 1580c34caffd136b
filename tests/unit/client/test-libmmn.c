/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn against a fake mmnd (fake-server.c): argument checking, callbacks
 * and acks, unsubscribe rules, read_begin/retry under concurrent
 * invalidations, reconnection with RESYNC, malformed server input, fork,
 * the library thread's memory out of NUMA balancing, and the uffd
 * registration path.
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake-server.h"
#include "lib/read-waiter.h"
#include "lib/dispatch.h"
#include "mmn/mmn.h"
#include "tap.h"

struct rec {
	unsigned inval, ends, releases, resyncs;
	struct mmn_range last, last_end;
	int last_reason;
	int ret;	  /* what invalidate returns */
	bool unsub_in_cb; /* unsubscribe from inside invalidate */
	int unsub_ret;
	pthread_t cb_thread;
	int efd; /* > 0: written when ends reaches end_target */
	unsigned end_target;
	bool foreign_thread; /* a callback ran on a thread other than cb_thread */
};

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	rec->inval++;
	rec->last = *r;
	rec->cb_thread = pthread_self();
	if (r->event == MMN_EVENT_RESYNC)
		rec->resyncs++;
	if (rec->unsub_in_cb)
		rec->unsub_ret = mmn_unsubscribe(s);
	return rec->ret;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	rec->ends++;
	rec->last_end = *r;
	if (rec->cb_thread && !pthread_equal(rec->cb_thread, pthread_self()))
		rec->foreign_thread = true;
	if (rec->efd > 0 && rec->ends == rec->end_target) {
		uint64_t one = 1;

		if (write(rec->efd, &one, sizeof(one)) < 0)
			abort();
	}
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct rec *rec = ud;

	rec->releases++;
	rec->last_reason = reason;
}

static struct mmn_sub_opts opts_for(struct rec *rec, uint32_t flags)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = flags,
		.invalidate = on_inval,
		.invalidate_end = on_end,
		.release = on_release,
		.userdata = rec,
	};
	return o;
}

static void test_args(void)
{
	struct mmn_client *c = (struct mmn_client *)&c;
	struct mmn_sub *s = NULL;
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	char longpath[200];

	tap_is_int(mmn_connect(NULL, NULL), -EINVAL, "connect: NULL out");
	tap_is_int(mmn_connect("/nonexistent/mmnd.sock", &c), -ENOENT, "connect: no socket -> -ENOENT");
	tap_ok(c == NULL, "connect: *out cleared on failure");
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	tap_is_int(mmn_connect(longpath, &c), -EINVAL, "connect: path too long");
	tap_is_int(mmn_connect("", &c), -EINVAL, "connect: empty path");
	tap_is_int(mmn_get_fd(NULL), -EINVAL, "get_fd(NULL)");
	tap_is_int(mmn_dispatch(NULL), -EINVAL, "dispatch(NULL)");
	tap_is_int(mmn_start_thread(NULL), -EINVAL, "start_thread(NULL)");
	tap_is_u64(mmn_capabilities(NULL), 0, "capabilities(NULL)");
	tap_is_int(mmn_subscribe(NULL, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe(NULL client)");
	tap_is_int(mmn_unsubscribe(NULL), -EINVAL, "unsubscribe(NULL)");
	tap_is_int(mmn_ack(NULL, 1), -EINVAL, "ack(NULL)");
	tap_ok(mmn_read_retry(NULL, 0), "read_retry(NULL) reports a collision");
	tap_ok(mmn_read_begin(NULL) & 1, "read_begin(NULL) is odd");
	tap_ok(mmn_sub_userdata(NULL) == NULL, "sub_userdata(NULL)");
	mmn_disconnect(NULL);
	tap_is_str(mmn_strerror(0), "success", "strerror(0)");
	tap_ok(strstr(mmn_strerror(-EOPNOTSUPP), "uffd") != NULL,
	       "strerror(-EOPNOTSUPP) explains the uffd limit");
	tap_ok(strstr(mmn_strerror(-ENOMEM), "not fully mapped") != NULL,
	       "strerror(-ENOMEM) mentions unmapped");
	tap_ok(strstr(mmn_strerror(EBUSY), "mmn_client") != NULL,
	       "strerror(EBUSY) (positive) explains -EBUSY");
	tap_ok(mmn_strerror(-EIO) != NULL && *mmn_strerror(-EIO), "strerror of a plain errno");
	tap_ok(mmn_strerror(-100000) != NULL, "strerror of an unknown value");
}

static void test_sub_args(struct mmn_client *c)
{
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct {
		struct mmn_sub_opts o;
		uint64_t future;
	} big = {o, 0};
	struct mmn_sub *s = (struct mmn_sub *)&s;

	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, NULL), -EINVAL, "subscribe: NULL out");
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, NULL, &s), -EINVAL, "subscribe: NULL opts");
	tap_ok(s == NULL, "subscribe: *out cleared on failure");
	tap_is_int(mmn_subscribe(c, -1, 4096, 4096, &o, &s), -EINVAL, "subscribe: negative pid");
	tap_is_int(mmn_subscribe(c, 0, 4096, 0, &o, &s), -EINVAL, "subscribe: length 0");
	tap_is_int(mmn_subscribe(c, 0, UINT64_MAX - 4095, 8192, &o, &s), -EOVERFLOW,
		   "subscribe: range wraps");
	tap_is_int(mmn_subscribe(c, 0, 1ull << 56, 4096, &o, &s), -EOVERFLOW,
		   "subscribe: past the user address space");
	o.size = 8;
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe: opts.size too small");
	o = opts_for(&rec, 0);
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe: no flag");
	o = opts_for(&rec, MMN_SUB_BLOCKING | MMN_SUB_NONBLOCKING);
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe: both flags");
	o = opts_for(&rec, 1u << 7);
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe: unknown flag");
	o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	o.event_mask = 1ull << 40;
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe: unknown event bit");
	o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	o.invalidate = NULL;
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &o, &s), -EINVAL, "subscribe: no invalidate callback");
	big.o.size = sizeof(big);
	big.future = 1;
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &big.o, &s), -E2BIG, "subscribe: unknown non-zero option");
	big.future = 0;
	tap_is_int(mmn_subscribe(c, 0, 4096, 4096, &big.o, &s), 0, "subscribe: larger opts with zero tail");
	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe");
	tap_is_int(mmn_unsubscribe(s), -EALREADY, "unsubscribe twice -> -EALREADY");
	tap_is_int(mmn_ack(s, 1), -EALREADY, "ack on a removed sub -> -EALREADY");
}

static void test_events(struct fake_server *fs, struct mmn_client *c)
{
	struct rec rec = {0}, rb = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct mmn_sub *s, *b;
	uint64_t seq, ev;
	unsigned idx;

	tap_require(mmn_subscribe(c, 0, 0x10000, 0x4000, &o, &s) == 0);
	idx = fs->nsubs - 1;
	tap_ok(mmn_sub_userdata(s) == &rec, "sub_userdata");
	seq = mmn_read_begin(s);
	tap_ok(!(seq & 1), "read_begin: even while quiescent");
	tap_ok(!mmn_read_retry(s, seq), "read_retry: no collision");

	ev = fs_invalidate(fs, idx, 0xf000, 0x12000, MMN_EVENT_UNMAP, false);
	tap_is_int(dispatch_until(c, &rec.inval, 1), 0, "invalidate delivered");
	tap_is_int(rec.inval, 1, "one invalidate");
	tap_is_u64(rec.last.start, 0x10000, "range clipped to the subscription (start)");
	tap_is_u64(rec.last.end, 0x12000, "range end");
	tap_is_int(rec.last.event, MMN_EVENT_UNMAP, "event UNMAP");
	tap_is_u64(rec.last.event_id, ev, "event_id");
	tap_ok(!rec.last.needs_ack, "needs_ack false for a non-blocking sub");
	tap_ok(mmn_read_retry(s, seq), "read_retry: collision while in flight");
	{
		struct read_waiter w;

		read_waiter_start(&w, s);
		fs_end(fs, idx, ev);
		read_waiter_join(&w);
		tap_ok(w.saw_change, "read_begin waited for the end of the invalidation");
		tap_ok(!(w.seq & 1) && !mmn_read_retry(s, w.seq), "and returned a valid even value");
	}
	tap_is_int(dispatch_until(c, &rec.ends, 1), 0, "invalidate_end delivered");
	tap_is_u64(rec.last_end.start, 0x10000, "end carries the invalidated range");
	tap_ok(mmn_read_retry(s, seq), "read_retry: still a collision after the end");
	seq = mmn_read_begin(s);
	tap_ok(!mmn_read_retry(s, seq), "new read_begin value is valid");

	/* Blocking: auto ack when the callback returns 0, explicit ack with MMN_ACK_LATER. */
	o = opts_for(&rb, MMN_SUB_BLOCKING);
	tap_require(mmn_subscribe(c, 0, 0x20000, 0x1000, &o, &b) == 0);
	ev = fs_invalidate(fs, fs->nsubs - 1, 0x20000, 0x21000, MMN_EVENT_CLEAR, true);
	dispatch_until(c, &rb.inval, 1);
	tap_ok(rb.last.needs_ack, "needs_ack delivered");
	tap_ok(fs_wait(fs, &fs->nacks, 1), "callback returned 0: library acked");
	tap_is_u64(fs->last_ack_event, ev, "ack names the event");
	fs_end(fs, fs->nsubs - 1, ev);
	dispatch_until(c, &rb.ends, 1);
	rb.ret = MMN_ACK_LATER;
	ev = fs_invalidate(fs, fs->nsubs - 1, 0x20000, 0x21000, MMN_EVENT_CLEAR, true);
	dispatch_until(c, &rb.inval, 2);
	tap_is_int(mmn_dispatch(c), 0, "dispatch with nothing due returns 0");
	pthread_mutex_lock(&fs->mu);
	tap_is_int(fs->nacks, 1, "MMN_ACK_LATER: no automatic ack");
	pthread_mutex_unlock(&fs->mu);
	tap_is_int(mmn_ack(b, ev), 0, "mmn_ack");
	tap_ok(fs_wait(fs, &fs->nacks, 2), "explicit ack arrives");
	tap_is_u64(fs->last_ack_event, ev, "explicit ack names the event");

	/* Unsubscribe with an invalidation outstanding: its end comes before unsubscribe returns. */
	tap_is_int(mmn_unsubscribe(b), 0, "unsubscribe with an outstanding invalidation");
	tap_is_int(rb.ends, 2, "pairing: invalidate_end delivered by unsubscribe");
	tap_ok(fs_wait(fs, &fs->nunsub, 2), "server saw Unsubscribe");

	/* Release: no more events, read_retry always collides, unsubscribe still frees. */
	fs_release(fs, idx);
	dispatch_until(c, &rec.releases, 1);
	tap_is_int(rec.releases, 1, "release delivered");
	tap_is_int(rec.last_reason, MMN_RELEASE_TARGET_GONE, "release reason");
	seq = mmn_read_begin(s);
	tap_ok(mmn_read_retry(s, seq), "released sub: read_begin returns, read_retry collides");
	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe a released sub");
}

static void test_unsub_in_cb(struct fake_server *fs, struct mmn_client *c)
{
	struct rec rec = {.unsub_in_cb = true, .unsub_ret = 1};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_BLOCKING);
	struct rec marker = {0};
	struct mmn_sub_opts mo = opts_for(&marker, MMN_SUB_NONBLOCKING);
	struct mmn_sub *s, *m;
	unsigned idx, midx, acks;
	uint64_t ev;

	tap_require(mmn_subscribe(c, 0, 0x38000, 0x1000, &mo, &m) == 0);
	midx = fs->nsubs - 1;
	tap_require(mmn_subscribe(c, 0, 0x30000, 0x1000, &o, &s) == 0);
	idx = fs->nsubs - 1;
	pthread_mutex_lock(&fs->mu);
	acks = fs->nacks;
	pthread_mutex_unlock(&fs->mu);
	ev = fs_invalidate(fs, idx, 0x30000, 0x31000, MMN_EVENT_UNMAP, true);
	dispatch_until(c, &rec.inval, 1);
	tap_is_int(rec.unsub_ret, 0, "unsubscribe inside its own invalidate callback");
	tap_is_int(rec.ends, 1, "pairing kept: invalidate_end delivered");
	fs_end(fs, idx, ev);
	fs_invalidate(fs, idx, 0x30000, 0x31000, MMN_EVENT_UNMAP, true);
	/* A marker on another sub: once it arrived, the one before it was handled. */
	ev = fs_invalidate(fs, midx, 0x38000, 0x39000, MMN_EVENT_UNMAP, false);
	dispatch_until(c, &marker.inval, 1);
	tap_is_int(marker.inval, 1, "marker delivered");
	fs_end(fs, midx, ev);
	tap_is_int(rec.inval, 1, "no callback after unsubscribe");
	tap_is_int(rec.ends, 1, "no second end");
	pthread_mutex_lock(&fs->mu);
	tap_is_int(fs->nacks, acks, "no ack sent for an unsubscribed sub");
	pthread_mutex_unlock(&fs->mu);
	mmn_unsubscribe(m);
}

/* 8 readers: a value read inside read_begin/retry is never torn. */
struct shared {
	struct mmn_sub *s;
	volatile uint64_t a, b; /* equal while quiescent; written in between by the "kernel" */
	volatile int stop;
	unsigned long ok, retried, stale;
};

static void *reader(void *arg)
{
	struct shared *sh = arg;
	unsigned long ok = 0, retried = 0, stale = 0;

	while (!sh->stop) {
		uint64_t seq = mmn_read_begin(sh->s), a, b;

		a = sh->a;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		b = sh->b;
		if (mmn_read_retry(sh->s, seq)) {
			retried++;
			continue;
		}
		if (a != b)
			stale++;
		else
			ok++;
	}
	__atomic_add_fetch(&sh->ok, ok, __ATOMIC_RELAXED);
	__atomic_add_fetch(&sh->retried, retried, __ATOMIC_RELAXED);
	__atomic_add_fetch(&sh->stale, stale, __ATOMIC_RELAXED);
	return NULL;
}

static void test_readers(struct fake_server *fs, struct mmn_client *c)
{
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct shared sh = {0};
	pthread_t th[8];
	unsigned idx;

	rec.efd = eventfd(0, EFD_CLOEXEC);
	rec.end_target = 5000;
	tap_require(mmn_start_thread(c) == 0);
	tap_is_int(mmn_start_thread(c), -EALREADY, "start_thread twice -> -EALREADY");
	tap_require(mmn_subscribe(c, 0, 0x40000, 0x1000, &o, &sh.s) == 0);
	idx = fs->nsubs - 1;
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, reader, &sh);
	for (unsigned i = 0; i < 5000; i++) {
		uint64_t ev = fs_invalidate(fs, idx, 0x40000, 0x41000, MMN_EVENT_CLEAR, false);

		sh.a = i + 1;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		for (volatile int k = 0; k < 2000;
		     k++) /* widen the torn window: a broken read_retry is caught */
			;
		sh.b = i + 1;
		fs_end(fs, idx, ev);
	}
	sh.stop = 1;
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	tap_diag("readers: %lu consistent, %lu retried, %lu stale", sh.ok, sh.retried, sh.stale);
	tap_is_int(sh.stale, 0, "8 threads: no torn read passed read_retry");
	tap_ok(sh.ok > 0, "readers made progress");
	{
		struct pollfd p = {.fd = rec.efd, .events = POLLIN};

		tap_is_int(poll(&p, 1, 5000), 1, "library thread delivered every end");
	}
	tap_is_int(rec.ends, 5000, "5000 ends");
	tap_ok(!pthread_equal(rec.cb_thread, pthread_self()) && !rec.foreign_thread,
	       "callbacks ran on the library thread only");
	close(rec.efd);
	mmn_unsubscribe(sh.s);
}

/* While disconnected, read_begin waits; it returns a valid value after the RESYNC. */
static void check_read_begin_waits(struct mmn_client *c, struct mmn_sub *s, struct rec *rec)
{
	struct read_waiter w;

	read_waiter_start(&w, s); /* nothing reconnects before we dispatch */
	dispatch_until(c, &rec->resyncs, 1);
	read_waiter_join(&w);
	tap_ok(w.saw_change, "read_begin waited while disconnected");
	tap_ok(!mmn_read_retry(s, w.seq), "and returned a valid value after the RESYNC");
}

/*
 * Malformed input: garbage, then a valid but impossible Invalidate, then a
 * request body from the server; each drops the connection, which comes back.
 */
static void check_malformed(struct fake_server *fs, struct mmn_client *c, struct rec *rec, unsigned hellos)
{
	int r;

	tap_is_int(fs_send_raw(fs, "\xff\xff\xff\xff garbage", 13), 0, "sent garbage");
	r = dispatch_until_err(c);
	tap_is_int(r, -EBADMSG, "garbage -> -EBADMSG, connection dropped");
	dispatch_until(c, &rec->resyncs, 2);
	tap_ok(fs_wait(fs, &fs->nhello, hellos + 2), "reconnected after garbage");
	tap_is_int(rec->resyncs, 2, "RESYNC after the second reconnection");
	fs_invalidate(fs, 0, 0x60000, 0x61000, MMN_EVENT_UNMAP, false); /* outside the sub */
	r = dispatch_until_err(c);
	tap_is_int(r, -EPROTO, "invalidate outside the subscription -> -EPROTO");
	dispatch_until(c, &rec->resyncs, 3);
	tap_ok(fs_wait(fs, &fs->nhello, hellos + 3), "reconnected again");
	{
		struct mmn_sub_opts o2 = opts_for(rec, MMN_SUB_NONBLOCKING);
		uint8_t buf[64];
		MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
		Mmn__V1__Hello h = MMN__V1__HELLO__INIT;
		struct mmn_sub *s2;
		int n;

		env.body_case = MMN__V1__ENVELOPE__BODY_HELLO; /* a request body from the server */
		env.hello = &h;
		n = mmn__wire_encode(&env, buf, sizeof(buf));
		fs_send_raw(fs, buf, (size_t)n);
		r = dispatch_until_err(c);
		tap_is_int(r, -EPROTO, "request body from the server -> -EPROTO");
		r = mmn_subscribe(c, 0, 0x70000, 0x1000, &o2, &s2);
		tap_ok(r == 0 || r == -ENOTCONN, "subscribe while reconnecting: 0 or -ENOTCONN");
		if (r == 0)
			mmn_unsubscribe(s2);
	}
}

static void test_reconnect(struct fake_server *fs)
{
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct mmn_client *c;
	struct mmn_sub *s;
	uint64_t seq, ev;
	unsigned hellos;
	int r;

	tap_require(mmn_connect(fs->path, &c) == 0);
	tap_require(mmn_subscribe(c, 0, 0x50000, 0x2000, &o, &s) == 0);
	ev = fs_invalidate(fs, fs->nsubs - 1, 0x50000, 0x51000, MMN_EVENT_UNMAP, false);
	dispatch_until(c, &rec.inval, 1);
	seq = ev; /* read_begin would wait: the invalidation is in flight */
	pthread_mutex_lock(&fs->mu);
	hellos = fs->nhello;
	pthread_mutex_unlock(&fs->mu);
	fs_kill(fs); /* mmnd dies with the invalidation in flight */
	r = dispatch_until_err(c);
	dispatch_until(c, &rec.ends, 1);
	tap_is_int(r, -ECONNRESET, "dispatch reports the lost connection once");
	tap_is_int(rec.ends, 1, "outstanding invalidation ended at connection loss");
	check_read_begin_waits(c, s, &rec);
	dispatch_until(c, &rec.resyncs, 1); /* dispatch drives the reconnection */
	tap_ok(fs_wait(fs, &fs->nhello, hellos + 1), "library reconnected by itself");
	tap_is_int(rec.resyncs, 1, "one RESYNC invalidation");
	tap_is_u64(rec.last.start, 0x50000, "RESYNC covers the whole subscription (start)");
	tap_is_u64(rec.last.end, 0x52000, "RESYNC covers the whole subscription (end)");
	dispatch_until(c, &rec.ends, 2);
	tap_is_int(rec.ends, 2, "RESYNC followed by its end");
	tap_is_int(fs->nsubs, 1, "resubscribed on the new connection");
	seq = mmn_read_begin(s);
	tap_ok(!(seq & 1) && !mmn_read_retry(s, seq), "read_begin/retry work again");
	ev = fs_invalidate(fs, 0, 0x51000, 0x52000, MMN_EVENT_REMOVE, false);
	dispatch_until(c, &rec.inval, 3);
	tap_is_int(rec.last.event, MMN_EVENT_REMOVE, "events flow on the new connection");
	tap_ok(mmn_read_retry(s, seq), "collision seen on the new page");
	fs_end(fs, 0, ev);
	dispatch_until(c, &rec.ends, 3);

	check_malformed(fs, c, &rec, hellos);
	mmn_disconnect(c);
}

/*
 * mmnd answers a Subscribe and at once invalidates the new range (it was
 * munmapped right away): the library thread may read both packets in one go,
 * before mmn_subscribe() runs again.  The Invalidate must reach the callback
 * and be acked, else the kernel waits for the deadline and mmnd evicts the sub.
 * The race is not forced, so repeat it.
 */
static void test_subscribe_burst(struct fake_server *fs)
{
	struct mmn_client *c;
	unsigned acks, i;
	bool ok = true;

	tap_require(mmn_connect(fs->path, &c) == 0);
	tap_require(mmn_start_thread(c) == 0);
	pthread_mutex_lock(&fs->mu);
	fs->inval_after_subscribe = true;
	acks = fs->nacks;
	pthread_mutex_unlock(&fs->mu);
	for (i = 0; i < 32 && ok; i++) {
		struct rec rec = {0};
		struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_BLOCKING);
		uint64_t ev, acked;
		struct mmn_sub *s;

		if (mmn_subscribe(c, 0, 0xa0000 + i * 0x1000, 0x1000, &o, &s) < 0) {
			ok = false;
			tap_diag("iteration %u: subscribe failed", i);
			break;
		}
		ok = fs_wait(fs, &fs->nacks, acks + 1);
		pthread_mutex_lock(&fs->mu);
		ev = fs->burst_event;
		acked = fs->last_ack_event;
		pthread_mutex_unlock(&fs->mu);
		acks++;
		/* The ack is sent after the callback returned, on the same thread. */
		if (!ok || acked != ev || __atomic_load_n(&rec.inval, __ATOMIC_SEQ_CST) != 1) {
			tap_diag("iteration %u: ack %s (event %llu, acked %llu), %u invalidate callbacks", i,
				 ok ? "seen" : "missing", (unsigned long long)ev, (unsigned long long)acked,
				 rec.inval);
			ok = false;
		}
		mmn_unsubscribe(s);
		if (rec.ends != 1) {
			tap_diag("iteration %u: %u ends for one invalidate", i, rec.ends);
			ok = false;
		}
	}
	tap_ok(ok, "SubscribeReply + Invalidate in one burst: callback ran, ack sent, end paired (%u runs)",
	       i);
	pthread_mutex_lock(&fs->mu);
	fs->inval_after_subscribe = false;
	pthread_mutex_unlock(&fs->mu);
	mmn_disconnect(c);
}

/* The memory policy of the page at @addr (get_mempolicy MPOL_F_ADDR), or -errno. */
static int policy_of(const void *addr)
{
	int mode = -1;

	if (syscall(SYS_get_mempolicy, &mode, NULL, 0UL, addr, 2UL /* MPOL_F_ADDR */) < 0)
		return -errno;
	return mode;
}

#define POLICY_LOCAL 4 /* MPOL_LOCAL */

/* The calling thread's own memory policy (get_mempolicy without flags), or -errno. */
static int thread_policy(void)
{
	int mode = -1;

	if (syscall(SYS_get_mempolicy, &mode, NULL, 0UL, NULL, 0UL) < 0)
		return -errno;
	return mode;
}

struct numa_probe {
	int stack_policy, thread_policy;
	int efd;
};

/* On the library thread: the policy of its stack, and its own. */
static int on_numa_probe(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct numa_probe *p = ud;
	volatile char here = 0;
	uint64_t one = 1;

	p->stack_policy = policy_of((const void *)&here);
	p->thread_policy = thread_policy();
	if (write(p->efd, &one, sizeof(one)) < 0)
		abort();
	return 0;
}

/* The first and last byte of the C library's writable segment. */
static int libc_data(struct dl_phdr_info *info, size_t size, void *data)
{
	const void **ends = data;

	if (!info->dlpi_name || !strstr(info->dlpi_name, "libc.so"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
			ends[0] = (const void *)(info->dlpi_addr + ph->p_vaddr);
			ends[1] = (const void *)(info->dlpi_addr + ph->p_vaddr + ph->p_memsz - 1);
			return 1;
		}
	}
	return 0;
}

/*
 * Automatic NUMA balancing makes anonymous pages inaccessible to sample
 * them, locked ones included, but not in a mapping with a memory policy of
 * its own: everything the library thread touches has MPOL_LOCAL, so that
 * it never takes a NUMA hinting fault while its own process waits for its
 * ack: its stack, the subscription handles (of mmn_subscribe and of
 * mmn_subscribe_many) and the C library's writable data.
 */
static void test_numa_exempt(struct fake_server *fs)
{
	struct numa_probe p = {.stack_policy = -1, .thread_policy = -1, .efd = eventfd(0, EFD_CLOEXEC)};
	struct mmn_sub_opts o = {
		.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_numa_probe, .userdata = &p};
	struct mmn_sub_request req = {.start = 0xc1000, .length = 0x1000, .opts = &o};
	struct pollfd pf = {.fd = p.efd, .events = POLLIN};
	const void *libc[2] = {NULL, NULL};
	struct mmn_client *c;
	struct mmn_sub *s;
	unsigned idx;

	if (policy_of(&p) == -ENOSYS) {
		tap_ok(1, "# SKIP a kernel without NUMA: no NUMA balancing to keep out of");
		close(p.efd);
		return;
	}
	tap_require(p.efd >= 0 && mmn_connect(fs->path, &c) == 0);
	tap_require(mmn_start_thread(c) == 0);
	tap_require(mmn_subscribe(c, 0, 0xc0000, 0x1000, &o, &s) == 0);
	idx = fs->nsubs - 1;
	tap_require(mmn_subscribe_many(c, &req, 1) == 1);
	tap_is_int(policy_of(s), POLICY_LOCAL, "a handle of mmn_subscribe has MPOL_LOCAL");
	tap_is_int(policy_of(req.sub), POLICY_LOCAL, "a handle of mmn_subscribe_many has MPOL_LOCAL");
	tap_require(dl_iterate_phdr(libc_data, libc) == 1);
	tap_ok(policy_of(libc[0]) == POLICY_LOCAL && policy_of(libc[1]) == POLICY_LOCAL,
	       "the C library's writable data has MPOL_LOCAL (first byte %d, last byte %d)", policy_of(libc[0]),
	       policy_of(libc[1]));
	fs_invalidate(fs, idx, 0xc0000, 0xc1000, MMN_EVENT_CLEAR, false);
	tap_is_int(poll(&pf, 1, 5000), 1, "the library thread ran the callback");
	tap_is_int(p.stack_policy, POLICY_LOCAL, "the library thread's stack has MPOL_LOCAL");
	/* So NUMA balancing's sampling, when the thread does it, skips the process's mappings. */
	tap_is_int(p.thread_policy, POLICY_LOCAL, "the library thread's own policy is MPOL_LOCAL");
	mmn_unsubscribe(s);
	mmn_unsubscribe(req.sub);
	mmn_disconnect(c);
	close(p.efd);
}

/*
 * mmnd dies with an invalidation outstanding on more subs than the event
 * queue holds at first: every one gets exactly one end (the pairing), then
 * a RESYNC and its end after the reconnection.
 */
#define NLOST 400

static void test_lost_many(struct fake_server *fs)
{
	static struct mmn_sub *subs[NLOST];
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct mmn_client *c;
	unsigned n = 0, hellos;

	tap_require(mmn_connect(fs->path, &c) == 0);
	for (n = 0; n < NLOST; n++)
		if (mmn_subscribe(c, 0, 0x1000000 + (uint64_t)n * 0x1000, 0x1000, &o, &subs[n]) < 0)
			break;
	tap_is_int(n, NLOST, "subscribed 400 subs");
	for (unsigned i = 0; i < n; i++) {
		fs_invalidate(fs, i, 0x1000000 + (uint64_t)i * 0x1000, 0x1001000 + (uint64_t)i * 0x1000,
			      MMN_EVENT_CLEAR, false);
		if (i % 32 == 31) /* the socket buffer is small: read as we go */
			dispatch_until(c, &rec.inval, i + 1);
	}
	dispatch_until(c, &rec.inval, n);
	tap_is_int(rec.inval, n, "one invalidate per sub delivered");
	pthread_mutex_lock(&fs->mu);
	hellos = fs->nhello;
	pthread_mutex_unlock(&fs->mu);
	fs_kill(fs);
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "connection loss reported");
	dispatch_until(c, &rec.ends, n);
	tap_is_int(rec.ends, n, "connection loss: every outstanding invalidation ended once");
	tap_is_int(rec.resyncs, 0, "no RESYNC before those ends");
	dispatch_until(c, &rec.ends, 2 * n);
	tap_ok(fs_wait(fs, &fs->nhello, hellos + 1), "reconnected");
	tap_is_int(rec.resyncs, n, "one RESYNC per sub");
	tap_is_int(rec.inval, 2 * n, "no other invalidation");
	tap_is_int(rec.ends, 2 * n, "every RESYNC ended, no extra end");
	for (unsigned i = 0; i < n; i++)
		mmn_unsubscribe(subs[i]);
	tap_is_int(rec.ends, 2 * n, "unsubscribe: nothing left to end");
	mmn_disconnect(c);
}

static void test_bad_hello(struct fake_server *fs)
{
	struct mmn_client *c = NULL;

	fs->reply_version = 7;
	tap_is_int(mmn_connect(fs->path, &c), -EPROTONOSUPPORT,
		   "HelloReply with version 7 -> -EPROTONOSUPPORT");
	fs->reply_version = MMN_PROTO_VERSION;
	fs->reply_without_fd = true;
	tap_is_int(mmn_connect(fs->path, &c), -EPROTO, "HelloReply without the seqpage fd -> -EPROTO");
	fs->reply_without_fd = false;
	{
		/*
		 * A rejected HelloReply leaves none of its descriptors behind:
		 * the second is a pipe's read end, so once the library closed
		 * its copy the pipe has no reader.
		 */
		int p[2];

		signal(SIGPIPE, SIG_IGN);
		tap_require(pipe(p) == 0);
		fs->reply_extra_fd = p[0];
		tap_is_int(mmn_connect(fs->path, &c), -EPROTO, "HelloReply with two descriptors -> -EPROTO");
		fs->reply_extra_fd = -1;
		close(p[0]);
		tap_ok(write(p[1], "x", 1) < 0 && errno == EPIPE, "the rejected HelloReply's descriptors are closed");
		close(p[1]);
	}
	setenv("MMN_SOCKET", fs->path, 1);
	tap_is_int(mmn_connect(NULL, &c), 0, "connect via $MMN_SOCKET");
	unsetenv("MMN_SOCKET");
	mmn_disconnect(c);
}

static void test_fork(struct fake_server *fs, struct mmn_client *c)
{
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct mmn_sub *s;
	int status;
	pid_t pid;

	tap_require(mmn_subscribe(c, 0, 0x80000, 0x1000, &o, &s) == 0);
	pid = fork();
	if (pid == 0) {
		struct mmn_sub *s2;
		int bad = 0;

		bad |= mmn_subscribe(c, 0, 0x90000, 0x1000, &o, &s2) != -ECHILD;
		bad |= mmn_dispatch(c) != -ECHILD;
		bad |= mmn_get_fd(c) != -ECHILD;
		bad |= !mmn_read_retry(s, mmn_read_begin(s));
		bad |= mmn_unsubscribe(s) != -ECHILD;
		mmn_disconnect(c);
		_exit(bad);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "fork child: -ECHILD everywhere, read_retry collides");
	tap_is_int(mmn_unsubscribe(s), 0, "parent still works after the child disconnected");
}

struct forker {
	int efd;
	pid_t tid;
	int status;
};

static void *forker_main(void *arg)
{
	struct forker *f = arg;
	uint64_t one = 1;
	pid_t k;

	f->tid = (pid_t)syscall(SYS_gettid);
	if (write(f->efd, &one, sizeof(one)) < 0)
		abort();
	k = fork();
	if (k == 0)
		_exit(0);
	waitpid(k, &f->status, 0);
	if (write(f->efd, &one, sizeof(one)) < 0)
		abort();
	return NULL;
}

/*
 * Until @tid sleeps in the kernel's userfaultfd wait (best effort: wchan may
 * be hidden).  No malloc and no stdio here: glibc's fork() holds their locks
 * while it waits.
 */
static bool wait_for_uffd_wait(pid_t tid)
{
	char path[64], buf[128];

	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", (int)tid);
	for (int i = 0; i < 100000; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n < 0)
			return false;
		buf[n] = 0;
		if (strstr(buf, "userfaultfd"))
			return true;
		sched_yield();
	}
	return false;
}

/*
 * mmnd stops reading the uffd (stuck), the process forks (fork waits for the
 * fork event to be read), then mmnd dies: the library thread must release
 * the uffd so that fork() returns.
 */
static void test_fork_stuck(struct fake_server *fs, struct mmn_client *c, char *buf, long ps, pid_t holder)
{
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct forker f = {.efd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE), .status = -1};
	struct pollfd p = {.fd = f.efd, .events = POLLIN};
	struct mmn_sub *s;
	bool seen;
	uint64_t v;
	pthread_t t;

	tap_require(mmn_start_thread(c) == 0);
	tap_is_int(mmn_subscribe(c, 0, (uintptr_t)buf, 2 * ps, &o, &s), 0, "subscribe for the fork test");
	pthread_create(&t, NULL, forker_main, &f);
	poll(&p, 1, 5000);
	tap_is_int(read(f.efd, &v, sizeof(v)), 8, "forker started");
	seen = wait_for_uffd_wait(f.tid);
	kill(holder, SIGKILL); /* mmnd dies while fork() waits for it */
	waitpid(holder, NULL, 0);
	fs_kill(fs);
	tap_is_int(poll(&p, 1, 10000), 1, "fork() returned after mmnd died mid-fork");
	tap_diag("%s", seen ? "fork() was seen waiting in the kernel for the fork event to be read"
			    : "could not see fork() waiting (wchan hidden?): the prepare path may have run");
	pthread_join(t, NULL);
	tap_ok(WIFEXITED(f.status), "child ran");
	close(f.efd);
	mmn_unsubscribe(s);
}

/*
 * mmnd refuses a connection (too many clients, stopping) with an Error and
 * closes: mmn_connect() returns that errno, whether the Hello got out first
 * (the socket is reset with it unread) or not.
 */
static void test_refused(struct fake_server *fs)
{
	struct mmn_client *c = NULL;

	pthread_mutex_lock(&fs->mu);
	fs->refuse = -EUSERS;
	pthread_mutex_unlock(&fs->mu);
	tap_is_int(mmn_connect(fs->path, &c), -EUSERS, "refused at accept -> mmnd's -EUSERS");
	tap_ok(c == NULL, "no client on refusal");
	pthread_mutex_lock(&fs->mu);
	fs->refuse = -ESHUTDOWN;
	fs->refuse_after_hello = true;
	pthread_mutex_unlock(&fs->mu);
	tap_is_int(mmn_connect(fs->path, &c), -ESHUTDOWN,
		   "refused with the Hello unread (connection reset) -> mmnd's -ESHUTDOWN");
	pthread_mutex_lock(&fs->mu);
	fs->refuse = 0;
	fs->refuse_after_hello = false;
	pthread_mutex_unlock(&fs->mu);
	tap_is_int(mmn_connect(fs->path, &c), 0, "accepted again");
	mmn_disconnect(c);
}

/*
 * fork() while "mmnd" (a holder process) keeps the uffd and never reads it.
 * The stuck "mmnd" must be another process: a uffd held by this process's
 * fake server would be inherited by the forking child.
 */
static void test_uffd_stuck(void)
{
	struct fake_server fs;
	struct mmn_client *c;
	long ps = sysconf(_SC_PAGESIZE);
	char *buf;
	int sp[2];
	pid_t holder;

	tap_require(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sp) == 0);
	holder = fork();
	if (holder == 0) {
		char b[CMSG_SPACE(sizeof(int))], byte;
		struct iovec iov = {.iov_base = &byte, .iov_len = 1};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = b,
				     .msg_controllen = sizeof(b)};

		close(sp[0]);
		if (recvmsg(sp[1], &msg, 0) == 1)
			pause(); /* hold the uffd, never read it, until killed */
		_exit(0);
	}
	close(sp[1]);
	tap_require(fs_start(&fs) == 0);
	fs.needs_uffd = true;
	fs.uffd_holder = sp[0];
	tap_require(mmn_connect(fs.path, &c) == 0);
	tap_ok(fs_wait(&fs, &fs.nattach, 1), "uffd handed to the holder process");
	buf = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	test_fork_stuck(&fs, c, buf, ps, holder);
	munmap(buf, 4 * ps);
	mmn_disconnect(c);
	fs_stop(&fs);
	close(sp[0]);
}

static void test_uffd(void)
{
	struct fake_server fs;
	struct rec rec = {0};
	struct mmn_sub_opts o = opts_for(&rec, MMN_SUB_NONBLOCKING);
	struct mmn_client *c, *c2 = NULL;
	struct mmn_sub *s;
	long ps = sysconf(_SC_PAGESIZE);
	unsigned n;
	char *buf;

	tap_require(fs_start(&fs) == 0);
	fs.needs_uffd = true;
	pthread_mutex_lock(&fs.mu);
	fs.old_uffd = true;
	pthread_mutex_unlock(&fs.mu);
	tap_is_int(mmn_connect(fs.path, &c2), -EPROTONOSUPPORT,
		   "uffd source of an mmnd that does not register ranges -> -EPROTONOSUPPORT");
	pthread_mutex_lock(&fs.mu);
	fs.old_uffd = false;
	pthread_mutex_unlock(&fs.mu);
	if (mmn_connect(fs.path, &c) == -EOPNOTSUPP) {
		tap_diag("userfaultfd unavailable: uffd tests skipped");
		fs_stop(&fs);
		return;
	}
	tap_ok(fs_wait(&fs, &fs.nattach, 1), "AttachUffd with the fd sent on connect");
	tap_ok(!!(mmn_capabilities(c) & MMN_CAP_SELF_ONLY), "capabilities: self only");
	tap_ok(!(mmn_capabilities(c) & MMN_CAP_ACKS_HOLD_KERNEL),
	       "capabilities: acks do not hold the kernel");
	buf = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(buf != MAP_FAILED);
	munmap(buf + 12 * ps, ps); /* a hole */
	tap_is_int(mmn_subscribe(c, getppid(), (uintptr_t)buf, ps, &o, &s), -EOPNOTSUPP,
		   "uffd: other pid -> -EOPNOTSUPP");
	tap_is_int(mmn_subscribe(c, 0, (uintptr_t)buf, 16 * ps, &o, &s), -ENOMEM,
		   "uffd: range with a hole -> -ENOMEM");
	tap_is_int(mmn_subscribe(c, 0, (uintptr_t)buf, 8 * ps, &o, &s), 0,
		   "uffd: subscribe own mapped memory");
	tap_is_int(fs.nresubscribe, 0, "uffd: a new subscription is not a resubscribe (strict registration)");
	munmap(buf + 6 * ps, ps); /* registered by the server through s: its uffd sees it */
	tap_ok(fs_wait(&fs, &fs.uffd_unmaps, 1), "server's uffd got UNMAP");
	tap_is_u64(fs.last_unmap_start, (uintptr_t)buf + 6 * ps, "UNMAP start");
	tap_is_u64(fs.last_unmap_end, (uintptr_t)buf + 7 * ps, "UNMAP end");
	madvise(buf, ps, MADV_DONTNEED);
	tap_ok(fs_wait(&fs, &fs.uffd_removes, 1), "server's uffd got REMOVE");
	n = fs.nunsub;
	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe");
	/* The server (mmnd) unregisters when it handles the Unsubscribe. */
	tap_ok(fs_wait(&fs, &fs.nunsub, n + 1), "server handled the Unsubscribe");
	madvise(buf + ps, ps, MADV_DONTNEED); /* unregistered: no event, and no wait for one */
	munmap(buf, 16 * ps);
	tap_is_int(fs.uffd_removes, 1, "no event after unsubscribe");
	mmn_disconnect(c);
	fs_stop(&fs);
	test_uffd_stuck();
}

static void log_stderr(int prio, const char *msg, void *ud)
{
	fprintf(stderr, "<%d>%s\n", prio, msg);
}

int main(void)
{
	struct fake_server fs;
	struct mmn_client *c;

	if (getenv("MMN_TEST_DEBUG"))
		mmn_set_log_fn(log_stderr, 7, NULL);

	test_args();
	tap_require(fs_start(&fs) == 0);
	tap_is_int(mmn_connect(fs.path, &c), 0, "connect to the fake mmnd");
	tap_ok(fs_wait(&fs, &fs.nhello, 1), "server saw Hello");
	tap_is_u64(mmn_capabilities(c) & 0xff, 0xff, "capabilities from HelloReply");
	tap_ok(!!(mmn_capabilities(c) & MMN_CAP_ACKS_HOLD_KERNEL), "acks hold the kernel");
	tap_ok(mmn_get_fd(c) >= 0, "get_fd");
	test_sub_args(c);
	test_events(&fs, c);
	test_unsub_in_cb(&fs, c);
	test_fork(&fs, c);
	test_readers(&fs, c);
	mmn_disconnect(c);
	test_reconnect(&fs);
	test_subscribe_burst(&fs);
	test_numa_exempt(&fs);
	test_lost_many(&fs);
	test_bad_hello(&fs);
	test_refused(&fs);
	fs_stop(&fs);
	test_uffd();
	return tap_done();
}
