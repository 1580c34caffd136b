/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * adapters/libfabric/monitor.c against the real mmnd (userfaultfd source),
 * with a notify that records ranges in place of libfabric's cache:
 * subscribe rounds to pages, merges what touches, reuses what covers;
 * valid() keeps entries until an invalidation (munmap, MADV_DONTNEED) hits
 * their subscription, which is then notified and dropped; at most max_subs
 * subscriptions are live (least recently used evicted, its range
 * notified) and the dropped ones are removed from mmnd, so many distinct
 * registrations stay bounded; after mmnd's death and restart the RESYNC
 * drops everything and subscribing works again.
 * With kmod (in a guest with mmn.ko) the subscriptions are blocking: a
 * notify held up is acked by the keeper (late_acks), munmap waits for it;
 * and they are kept across invalidations (re-armed once notified).
 *   test-libfabric-monitor MMND [uffd|kmod]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "lib/mmnd-run.h"
#include "monitor.h"
#include "tap.h"

#define MAX_SUBS 4
#define MAX_REC 4096

/*
 * The ranges notify was called with; guarded by lock, cond broadcast on
 * each and when the gate opens.  While gate is closed notify records its
 * range, then waits (libfabric's cache lock held by someone else).
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool gate;
	unsigned n;
	uint64_t start[MAX_REC], len[MAX_REC];
} rec = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, {0}, {0}};

static void rec_notify(void *ctx, uint64_t start, uint64_t len)
{
	pthread_mutex_lock(&rec.lock);
	if (rec.n < MAX_REC) {
		rec.start[rec.n] = start;
		rec.len[rec.n] = len;
	}
	rec.n++;
	pthread_cond_broadcast(&rec.cond);
	while (rec.gate)
		pthread_cond_wait(&rec.cond, &rec.lock);
	pthread_mutex_unlock(&rec.lock);
}

static void gate(bool closed)
{
	pthread_mutex_lock(&rec.lock);
	rec.gate = closed;
	pthread_cond_broadcast(&rec.cond);
	pthread_mutex_unlock(&rec.lock);
}

static bool rec_has_locked(unsigned from, uint64_t start, uint64_t len)
{
	for (unsigned i = from; i < rec.n && i < MAX_REC; i++)
		if (rec.start[i] == start && rec.len[i] == len)
			return true;
	return false;
}

/* How many notifies there were so far: rec_wait() looks at those after. */
static unsigned rec_mark(void)
{
	unsigned n;

	pthread_mutex_lock(&rec.lock);
	n = rec.n;
	pthread_mutex_unlock(&rec.lock);
	return n;
}

/* Whether notify got exactly [start, start + len) after mark @from, now. */
static bool rec_seen(unsigned from, uint64_t start, uint64_t len)
{
	bool ok;

	pthread_mutex_lock(&rec.lock);
	ok = rec_has_locked(from, start, len);
	pthread_mutex_unlock(&rec.lock);
	return ok;
}

/* Whether notify got exactly [start, start + len) after mark @from, waiting 5 s at most for it. */
static bool rec_wait(unsigned from, uint64_t start, uint64_t len)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&rec.lock);
	while (!(ok = rec_has_locked(from, start, len)))
		if (pthread_cond_timedwait(&rec.cond, &rec.lock, &ts) == ETIMEDOUT) {
			ok = rec_has_locked(from, start, len);
			break;
		}
	pthread_mutex_unlock(&rec.lock);
	return ok;
}

static struct mmn_libfabric_stats stats(struct mlf_monitor *m)
{
	struct mmn_libfabric_stats st;

	mlf_stats(m, &st);
	return st;
}

static uint64_t ps;
static char *R; /* 16 pages */
static bool kmod; /* mmnd runs the kmod source (in a guest with mmn.ko): blocking subscriptions */
static const char *const kmod_args[] = {"--source=kmod", "--ack-timeout-ms=2000", "--ack-cap-ms=2000", "--log-level=warning", NULL};

static uint64_t pg(unsigned i)
{
	return (uint64_t)(uintptr_t)R + i * ps;
}

static void test_merge(struct mlf_monitor *m)
{
	tap_is_int(mlf_subscribe(m, pg(0) + 100, 2 * ps - 200), 0, "subscribe inside pages 0-1");
	tap_is_u64(stats(m).subs, 1, "one subscription");
	tap_ok(mlf_valid(m, pg(0) + 100, 2 * ps - 200), "valid: the registered range");
	tap_ok(mlf_valid(m, pg(0), 2 * ps), "valid: rounded out to pages");
	tap_ok(!mlf_valid(m, pg(1), 2 * ps), "not valid: a range the subscription does not cover");
	tap_is_int(mlf_subscribe(m, pg(1), ps), 0, "subscribe a covered range");
	tap_is_u64(stats(m).subscribes, 1, "a covered range makes no new subscription");
	tap_is_int(mlf_subscribe(m, pg(2), ps), 0, "subscribe the page touching it");
	tap_is_u64(stats(m).subscribes, 2, "one more subscription: the merged one");
	tap_is_u64(stats(m).merges, 1, "the first one merged into it");
	tap_is_u64(stats(m).subs, 1, "still one live subscription");
	tap_ok(mlf_valid(m, pg(0), 3 * ps), "valid: pages 0-2 in one");
	mlf_drain(m);
	tap_is_u64(stats(m).unsubscribes, 1, "the merged-away subscription was removed from mmnd");
}

static void test_invalidate(struct mlf_monitor *m)
{
	uint64_t late0 = stats(m).late_acks, sub0;
	unsigned mark = rec_mark();

	tap_is_int(munmap(R + ps, ps), 0, "munmap page 1");
	/* Unless the keeper acked first (the notifier was not scheduled for MLF_ACK_LATE_MS). */
	if (kmod)
		tap_ok(rec_seen(mark, pg(1), ps) || stats(m).late_acks > late0,
		       "kmod: notify ran before munmap returned");
	tap_ok(rec_wait(mark, pg(1), ps), "notify: exactly page 1");
	/* uffd watches the mapping (gone): dropped; mmn.ko watches the addresses: kept, re-armed at the end. */
	if (!kmod)
		tap_ok(!mlf_valid(m, pg(0), ps), "not valid: page 0 shared the dropped subscription");
	tap_is_u64(stats(m).subs, kmod ? 1 : 0, "the invalidated subscription: dropped (uffd), kept (kmod)");
	mlf_drain(m); /* notified and ended */
	tap_ok(mlf_valid(m, pg(0), ps) == kmod, "page 0 after the end: valid on the kept subscription only");
	tap_require(mmap(R + ps, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    R + ps);
	R[ps] = 1;
	sub0 = stats(m).subscribes;
	tap_is_int(mlf_subscribe(m, pg(0), 3 * ps), 0, "subscribe pages 0-2 again");
	tap_is_u64(stats(m).subscribes - sub0, kmod ? 0 : 1, "the reused address: kmod needs no new subscription");
	tap_ok(mlf_valid(m, pg(0), 3 * ps), "valid again");
	mark = rec_mark();
	tap_is_int(madvise(R, ps, MADV_DONTNEED), 0, "MADV_DONTNEED page 0");
	tap_ok(rec_wait(mark, pg(0), ps), "notify: exactly page 0");
	if (!kmod)
		tap_ok(!mlf_valid(m, pg(2), ps), "not valid after the REMOVE (dropped)");
	mlf_drain(m);
	tap_is_u64(stats(m).subscribes - stats(m).unsubscribes, kmod ? 1 : 0,
		   "mmnd holds no subscription of ours (uffd), the kept one (kmod)");
}

/*
 * An entry registered before an invalidation must stay invalid until
 * notify dropped it, even when a newer subscription covers its range.
 */
static void test_pending(struct mlf_monitor *m)
{
	uint64_t late0 = stats(m).late_acks;
	unsigned mark;

	tap_is_int(mlf_subscribe(m, pg(0), 2 * ps), 0, "subscribe pages 0-1");
	gate(true);
	mark = rec_mark();
	tap_is_int(munmap(R + ps, ps), 0, "munmap page 1 while notify is held up");
	tap_ok(rec_wait(mark, pg(1), ps), "notify entered for page 1");
	tap_require(mmap(R + ps, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    R + ps);
	R[ps] = 1;
	tap_is_int(mlf_subscribe(m, pg(0), 4 * ps), 0, "subscribe pages 0-3 (a new entry)");
	tap_ok(!mlf_valid(m, pg(0), 2 * ps), "not valid: the old entry over page 1, notify not done");
	tap_ok(mlf_valid(m, pg(2), 2 * ps), "valid: pages 2-3 overlap no pending invalidation");
	/* kmod: munmap returned because the keeper acked while notify was held up. */
	tap_is_int(stats(m).late_acks - late0, kmod ? 1 : 0, "late acks: kmod 1, uffd none (nothing to ack)");
	gate(false);
	mlf_drain(m);
	tap_ok(mlf_valid(m, pg(0), 4 * ps), "valid once notify ran: pages 0-3");
	mark = rec_mark();
	tap_is_int(munmap(R + 3 * ps, ps), 0, "munmap page 3");
	tap_ok(rec_wait(mark, pg(3), ps), "notify: page 3");
	tap_require(mmap(R + 3 * ps, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			 0) == R + 3 * ps);
	R[3 * ps] = 1;
	mlf_drain(m);
}

static void test_bound(struct mlf_monitor *m)
{
	uint64_t ev0 = stats(m).evictions;
	unsigned mark;

	for (unsigned i = 4; i <= 10; i += 2)
		tap_is_int(mlf_subscribe(m, pg(i), ps), 0, "subscribe a separate page");
	tap_is_u64(stats(m).subs, MAX_SUBS, "max_subs live");
	tap_ok(mlf_valid(m, pg(4), ps), "valid: page 4 (now the most recently used)");
	mark = rec_mark();
	tap_is_int(mlf_subscribe(m, pg(12), ps), 0, "one subscription more than max_subs");
	tap_is_u64(stats(m).subs, MAX_SUBS, "still max_subs live");
	tap_is_u64(stats(m).evictions - ev0, 1, "one eviction");
	tap_ok(rec_wait(mark, pg(6), ps), "notify: the least recently used, page 6");
	tap_ok(!mlf_valid(m, pg(6), ps), "not valid: page 6 lost its subscription");
	tap_ok(mlf_valid(m, pg(4), ps), "valid: page 4 kept its");
	tap_ok(mlf_valid(m, pg(12), ps), "valid: page 12");
}

/* Many distinct registrations: mmnd's count of our subscriptions stays bounded. */
static void test_many(struct mlf_monitor *m)
{
	size_t n = 512;
	char *big = mmap(NULL, 2 * n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t max_held = 0, sub0 = stats(m).subscribes;
	int fails = 0;

	tap_require(big != MAP_FAILED);
	for (size_t i = 0; i < n; i++) {
		struct mmn_libfabric_stats st;

		big[2 * i * ps] = 1;
		fails += mlf_subscribe(m, (uintptr_t)big + 2 * i * ps, ps) != 0;
		st = stats(m);
		if (st.subscribes - st.unsubscribes > max_held)
			max_held = st.subscribes - st.unsubscribes;
	}
	tap_is_int(fails, 0, "512 distinct registrations subscribed");
	tap_is_u64(stats(m).subscribes - sub0, n, "one subscription each");
	tap_ok(max_held <= 2 * MAX_SUBS, "held in mmnd at most 2 * max_subs at any time (%llu)",
	       (unsigned long long)max_held);
	mlf_drain(m);
	tap_ok(stats(m).subscribes - stats(m).unsubscribes <= MAX_SUBS, "held in mmnd after drain: max_subs");
	munmap(big, 2 * n * ps);
}

/*
 * mmnd SIGKILLed under the monitor: subscribing fails (no hang) while it is
 * gone; after the restart libmmn's RESYNC notifies every subscription's
 * range, and the monitor subscribes again.
 */
static void test_mmnd_death(struct mlf_monitor *m, struct mmnd_run *d)
{
	unsigned mark;
	int ret;

	tap_is_int(mlf_subscribe(m, pg(14), ps), 0, "subscribe page 14");
	tap_ok(mlf_valid(m, pg(14), ps), "valid: page 14");
	mark = rec_mark();
	tap_ok(mmnd_run_kill(d, SIGKILL, 5000) >= 0, "mmnd SIGKILLed");
	ret = mlf_subscribe(m, pg(15), ps);
	tap_ok(ret < 0, "subscribe while mmnd is gone fails: %d (%s)", ret, mmn_strerror(ret));
	tap_require(mmnd_run_start(d, NULL, 20000) == 0);
	tap_ok(rec_wait(mark, pg(14), ps), "after the restart: page 14's range notified (RESYNC)");
	mlf_drain(m);
	/* Entries older than the RESYNC were notified; kmod keeps the (resubscribed) subscription. */
	tap_ok(mlf_valid(m, pg(14), ps) == kmod, "after the RESYNC: valid only where the subscription is kept");
	tap_is_int(mlf_subscribe(m, pg(14), ps), 0, "subscribe page 14 again");
	tap_ok(mlf_valid(m, pg(14), ps), "valid again");
}

static void test_errors(struct mlf_monitor *m)
{
	char *gone = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t err0 = stats(m).errors;

	tap_require(gone != MAP_FAILED);
	munmap(gone, ps);
	if (!kmod) { /* the uffd source watches mapped memory only */
		tap_is_int(mlf_subscribe(m, (uintptr_t)gone, ps), -ENOMEM, "subscribe unmapped memory: -ENOMEM");
		tap_is_u64(stats(m).errors - err0, 1, "counted as an error");
		tap_ok(!mlf_valid(m, (uintptr_t)gone, ps), "not valid: never subscribed");
	}
	tap_is_int(mlf_subscribe(m, pg(0), 0), -EINVAL, "length 0: -EINVAL");
	tap_is_int(mlf_subscribe(m, UINT64_MAX - 10, 100), -EINVAL, "wrapping range: -EINVAL");
	tap_is_int(mlf_subscribe(NULL, pg(0), ps), -EINVAL, "NULL monitor: -EINVAL");
	tap_ok(!mlf_valid(NULL, pg(0), ps), "NULL monitor: not valid");
}

int main(int argc, char **argv)
{
	struct mmn_libfabric_stats st;
	struct mmnd_run d;
	struct mmn_client *c;
	struct mlf_monitor *m;

	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "uffd") && strcmp(argv[2], "kmod")))
		tap_skip_all("usage: test-libfabric-monitor MMND [uffd|kmod]");
	kmod = argc == 3 && !strcmp(argv[2], "kmod");
	if (!kmod && !mmnd_run_uffd_available())
		tap_skip_all("userfaultfd unavailable (or under valgrind): the uffd source cannot run here");
	signal(SIGPIPE, SIG_IGN);
	ps = (uint64_t)sysconf(_SC_PAGESIZE);
	tap_require(mmnd_run_init(&d, argv[1]) == 0);
	tap_require(mmnd_run_start(&d, kmod ? kmod_args : NULL, 20000) == 0);
	tap_require(mmn_connect(d.sock, &c) == 0);
	tap_is_int(!!(mmn_capabilities(c) & MMN_CAP_ACKS_HOLD_KERNEL), kmod,
		   kmod ? "kmod source: acks hold the kernel (blocking subscriptions)"
			: "uffd source: acks do not hold the kernel (non-blocking subscriptions)");
	tap_is_int(mlf_create(c, MAX_SUBS, NULL, NULL, &m), -EINVAL, "create without notify: -EINVAL");
	tap_require(mlf_create(c, MAX_SUBS, rec_notify, NULL, &m) == 0);
	R = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(R != MAP_FAILED);
	for (unsigned i = 0; i < 16; i++)
		R[i * ps] = 1;

	test_merge(m);
	test_invalidate(m);
	test_pending(m);
	test_bound(m);
	test_many(m);
	test_mmnd_death(m, &d);
	test_errors(m);

	st = stats(m);
	tap_diag("subscribes %" PRIu64 " unsubscribes %" PRIu64 " merges %" PRIu64 " evictions %" PRIu64
		 " invalidations %" PRIu64 " notifies %" PRIu64 " late_acks %" PRIu64 " errors %" PRIu64,
		 st.subscribes, st.unsubscribes, st.merges, st.evictions, st.invalidations, st.notifies,
		 st.late_acks, st.errors);
	mlf_destroy(m);
	mmn_disconnect(c);
	munmap(R, 16 * ps);
	mmnd_run_fini(&d);
	return tap_done();
}
