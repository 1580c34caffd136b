/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn against the real mmnd with the userfaultfd source and real kernel
 * events: a subscription to our own memory sees UNMAP for exactly the
 * unmapped part and REMOVE for MADV_DONTNEED; after mmnd is killed and
 * restarted the library reconnects, delivers RESYNC for the whole
 * subscription and the subscription works again.
 *   test-libmmn-mmnd MMND
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmn/mmn.h"
#include "lib/dispatch.h"
#include "lib/mmnd-run.h"
#include "tap.h"

#define MAX_EV 64

struct rec {
	unsigned ninval, nend, nresync;
	struct mmn_range inval[MAX_EV], end[MAX_EV];
};

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	if (rec->ninval < MAX_EV)
		rec->inval[rec->ninval] = *r;
	rec->ninval++;
	if (r->event == MMN_EVENT_RESYNC)
		rec->nresync++;
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	if (rec->nend < MAX_EV)
		rec->end[rec->nend] = *r;
	rec->nend++;
}

/*
 * meson (1.0) marks a TAP test that exits non-zero as ERROR even with a
 * "1..0 # SKIP" plan, so skip with exit 0 (tests/tap.h's tap_skip_all exits 77).
 */
static void skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

/* A second client dispatching on the library thread: counts RESYNC ends, wakes an eventfd. */
static int thr_efd;
static unsigned thr_resync_ends, thr_unmaps;

static int thr_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	if (r->event == MMN_EVENT_UNMAP)
		__atomic_add_fetch(&thr_unmaps, 1, __ATOMIC_RELAXED);
	return 0;
}

static void thr_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	uint64_t one = 1;

	if (r->event == MMN_EVENT_RESYNC)
		__atomic_add_fetch(&thr_resync_ends, 1, __ATOMIC_RELAXED);
	if (write(thr_efd, &one, sizeof(one)) < 0)
		abort();
}

/* Wait (poll on the eventfd, 5 s at most) until *@counter >= @n. */
static bool thr_wait(const unsigned *counter, unsigned n)
{
	for (int i = 0; i < 100 && __atomic_load_n(counter, __ATOMIC_RELAXED) < n; i++) {
		struct pollfd p = {.fd = thr_efd, .events = POLLIN};
		uint64_t v;

		poll(&p, 1, 50);
		if (read(thr_efd, &v, sizeof(v)) < 0) {
			/* nothing yet */
		}
	}
	return __atomic_load_n(counter, __ATOMIC_RELAXED) >= n;
}

static char dir[] = "/tmp/mmn-host-XXXXXX";
static char sock[128];

static pid_t start_mmnd(const char *mmnd)
{
	return mmnd_run_uffd(mmnd, sock);
}

static bool has_inval(const struct rec *rec, unsigned from, uint64_t a, uint64_t b, enum mmn_event ev)
{
	for (unsigned i = from; i < rec->ninval && i < MAX_EV; i++)
		if (rec->inval[i].start == a && rec->inval[i].end == b && rec->inval[i].event == ev)
			return true;
	return false;
}

/*
 * Dispatch until the invalidation [a, b) @ev arrived (5 s at most).  Not an
 * end count: after a restart the subscription's holes may hold other
 * mappings (the second client's), whose changes are invalidations too.
 */
static void dispatch_until_inval(struct mmn_client *c, const struct rec *rec, unsigned from, uint64_t a,
				 uint64_t b, enum mmn_event ev)
{
	for (int i = 0; i < 500 && !has_inval(rec, from, a, b, ev); i++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};

		poll(&p, 1, 10);
		mmn_dispatch(c);
	}
}

/*
 * Over 80 lines on purpose: one story told in order (subscribe, events, a
 * second client, mmnd killed and restarted, RESYNC, events again), each step
 * asserting on the state the previous ones left in rec, c, s and the buffers.
 */
/* ---- the cases, in order ---- */

static struct rec rec;	/* what the first client's callbacks saw */
static long ps;		/* page size */
static char *buf;	/* the first client's 64 pages */
static uintptr_t b;	/* buf as a number */

/* Map buf and subscribe to pages [2, 62) of it; what cannot be subscribed. */
static struct mmn_sub *subscribe_own(struct mmn_client *c)
{
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .flags = MMN_SUB_BLOCKING,
				 .invalidate = on_inval,
				 .invalidate_end = on_end,
				 .userdata = &rec};
	struct mmn_sub *s, *tmp;

	buf = mmap(NULL, 64 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(buf != MAP_FAILED);
	memset(buf, 1, 64 * ps);
	b = (uintptr_t)buf;
	tap_is_int(mmn_subscribe(c, 0, b + 2 * ps, 60 * ps, &o, &s), 0, "subscribe own memory (blocking)");
	tap_is_int(mmn_subscribe(c, getppid(), b, ps, &o, &tmp), -EOPNOTSUPP, "another pid -> -EOPNOTSUPP");
	munmap(buf + 63 * ps, ps);
	tap_is_int(mmn_subscribe(c, 0, b + 62 * ps, 2 * ps, &o, &tmp), -ENOMEM,
		   "range not fully mapped -> -ENOMEM");
	return s;
}

/* munmap and madvise: UNMAP and REMOVE for exactly the subscribed part. */
static void test_events(struct mmn_client *c)
{
	unsigned from;

	/* munmap [0, 8) pages: the sub covers [2, 62), so exactly [2, 8). */
	munmap(buf, 8 * ps);
	dispatch_until(c, &rec.nend, 1);
	tap_is_int(rec.ninval, 1, "one invalidation for munmap");
	tap_ok(has_inval(&rec, 0, b + 2 * ps, b + 8 * ps, MMN_EVENT_UNMAP),
	       "UNMAP for exactly the unmapped part");
	tap_is_int(rec.nend, 1, "followed by its end");
	tap_is_u64(rec.end[0].event_id, rec.inval[0].event_id, "end names the same event");

	from = rec.ninval;
	madvise(buf + 10 * ps, 2 * ps, MADV_DONTNEED);
	dispatch_until(c, &rec.nend, 2);
	tap_ok(has_inval(&rec, from, b + 10 * ps, b + 12 * ps, MMN_EVENT_REMOVE), "REMOVE for MADV_DONTNEED");
}

/* A second client on its library thread, subscribed to its own 8 pages at *@buf2. */
static struct mmn_sub *start_second(struct mmn_client **c2, char **buf2)
{
	struct mmn_sub_opts o2 = {.size = sizeof(o2),
				  .flags = MMN_SUB_NONBLOCKING,
				  .invalidate = thr_inval,
				  .invalidate_end = thr_end};
	struct mmn_sub *s2;

	thr_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	tap_require(mmn_connect(sock, c2) == 0);
	tap_is_int(mmn_start_thread(*c2), 0, "second client: library thread");
	*buf2 = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(*buf2 != MAP_FAILED);
	tap_is_int(mmn_subscribe(*c2, 0, (uintptr_t)*buf2, 8 * ps, &o2, &s2), 0, "second client subscribed");
	return s2;
}

/* Kill mmnd (@pid): the connection drops, read_retry collides; the new mmnd's pid. */
static pid_t kill_and_restart(struct mmn_client *c, struct mmn_sub *s, pid_t pid, const char *mmnd)
{
	/*
	 * With the uffd's fork event, fork() waits until mmnd reads it: with
	 * mmnd dead it must not hang (the library keeps no descriptor of its
	 * uffd, so mmnd's death released it).  A hang here is a meson timeout.
	 */
	pid_t k;
	int status = -1;

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	k = fork();
	if (k == 0)
		_exit(0);
	waitpid(k, &status, 0);
	tap_ok(k > 0 && WIFEXITED(status), "fork() right after mmnd died returns");
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "dispatch reports the lost connection");
	tap_ok(mmn_read_retry(s, 0), "read_retry collides while mmnd is gone");
	unlink(sock);
	pid = start_mmnd(mmnd);
	tap_require(pid > 0);
	return pid;
}

/* After the restart: RESYNC for the whole subscription, then it works again. */
static void test_resync(struct mmn_client *c, struct mmn_sub *s)
{
	unsigned ends = rec.nend, from;
	uint64_t seq;

	dispatch_until(c, &rec.nresync, 1);
	tap_is_int(rec.nresync, 1, "RESYNC delivered after mmnd restarted");
	tap_ok(has_inval(&rec, 0, b + 2 * ps, b + 62 * ps, MMN_EVENT_RESYNC),
	       "RESYNC covers the whole subscription");
	dispatch_until(c, &rec.nend, ends + 1);
	tap_ok(rec.nend > ends && rec.end[ends].event == MMN_EVENT_RESYNC, "RESYNC followed by its end");
	seq = mmn_read_begin(s);
	tap_ok(!(seq & 1) && !mmn_read_retry(s, seq), "read_begin/retry valid again");
	from = rec.ninval;
	munmap(buf + 20 * ps, 4 * ps);
	dispatch_until_inval(c, &rec, from, b + 20 * ps, b + 24 * ps, MMN_EVENT_UNMAP);
	tap_ok(has_inval(&rec, from, b + 20 * ps, b + 24 * ps, MMN_EVENT_UNMAP),
	       "subscription back: UNMAP from the restarted mmnd");
	tap_ok(!has_inval(&rec, from, b + 2 * ps, b + 8 * ps, MMN_EVENT_UNMAP), "no stale replay of old events");
}

int main(int argc, char **argv)
{
	struct mmn_client *c, *c2;
	struct mmn_sub *s, *s2;
	char *buf2;
	pid_t pid;

	if (argc != 2)
		skip_all("usage: test-libmmn-mmnd MMND");
	if (!mmnd_run_uffd_available())
		skip_all("userfaultfd unavailable (or under valgrind): the uffd source cannot run here");
	signal(SIGPIPE, SIG_IGN);
	ps = sysconf(_SC_PAGESIZE);
	tap_require(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/mmnd.sock", dir);
	pid = start_mmnd(argv[1]);
	tap_require(pid > 0);

	tap_require(mmn_connect(sock, &c) == 0);
	tap_ok(!!(mmn_capabilities(c) & MMN_CAP_SELF_ONLY), "uffd source: self only");
	tap_ok(!!(mmn_capabilities(c) & (1ull << MMN_EVENT_UNMAP)), "uffd source delivers UNMAP");
	s = subscribe_own(c);
	test_events(c);
	s2 = start_second(&c2, &buf2);
	pid = kill_and_restart(c, s, pid, argv[1]);
	test_resync(c, s);

	tap_ok(thr_wait(&thr_resync_ends, 1), "library thread: RESYNC and its end after the restart");
	munmap(buf2, ps);
	tap_ok(thr_wait(&thr_unmaps, 1), "library thread: UNMAP from the restarted mmnd");
	tap_is_int(mmn_unsubscribe(s2), 0, "second client: unsubscribe");
	mmn_disconnect(c2);
	munmap(buf2, 8 * ps);

	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe");
	mmn_disconnect(c);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
	rmdir(dir);
	return tap_done();
}
