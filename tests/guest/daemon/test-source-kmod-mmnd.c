/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd with the kmod source and mmn.ko, in the guest: acks really hold the
 * kernel.
 *
 *   usage: test-source-kmod-mmnd MMND
 *
 * Starts MMND --source=kmod (root, the module loaded by run-guest), then, per
 * case, forks a target process that maps a range and munmaps it on command,
 * timing the munmap with CLOCK_MONOTONIC; this process is the libmmn client
 * subscribed to that range of the target.
 *
 *   blocking   the invalidate callback defers its ack; the test sees the
 *              invalidation arrive (pipe from the callback), checks that
 *              munmap has not returned, waits a deliberate delay (the
 *              behaviour under test, not synchronisation), acks: munmap
 *              returns after the ack, having lasted at least the delay.
 *   silent     never acks, deadline 400 ms: mmnd evicts the client
 *              (release TIMEOUT) and munmap returns at about the deadline,
 *              before the module's own timeout.
 *   nonblocking  the callback does not return until the test says so, and
 *              munmap returns meanwhile.
 *   death      a second mmnd is SIGKILLed while munmap waits for its ack:
 *              munmap returns at once (the module sees the socket close).
 *   lost END   a third mmnd is stopped (SIGSTOP) while the kernel waits for
 *              a silent blocking client; a flood of another target's events
 *              congests mmnd's netlink queue before that wait ends, so the
 *              module's INVALIDATE_END meets a full queue; mmnd continues
 *              (SIGCONT), resynchronises after the overrun, and the event
 *              must still end at once for a non-blocking observer of the
 *              same range (its read_begin returns), not after mmnd's 60 s
 *              last-resort END timer.  Skipped if the flood cannot congest
 *              the queue in time.
 *
 * Exits 77 when not root or the module's family does not resolve.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "child.h"
#include "knob.h"
#include "mmnd-run.h"
#include "tap.h"
#include "target.h"

#define PAGES 16
#define MS 1000000ull

/* <linux/mmn.h> and <mmn/mmn.h> both name enum mmn_event: ask sysfs instead. */
static int module_loaded(void)
{
	return access("/sys/module/mmn", F_OK) == 0;
}

/* Write a module parameter; 0 or -errno. */
static int kt_param(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/mmn/parameters/%s", name);
	return knob_write(path, val);
}

/* ---- the target process ---------------------------------------------------- */

/* On 'u': munmap the whole range, report {t_before, t_after}. */
static void target_main(int cmd, int rep, char *p, size_t len)
{
	uint64_t t[2];
	char c;

	if (fd_read_full(cmd, &c, 1) < 0 || c != 'u')
		_exit(0);
	t[0] = mono_ns();
	munmap(p, len);
	t[1] = mono_ns();
	if (write(rep, t, sizeof(t)) != sizeof(t))
		_exit(4);
	while (read(cmd, &c, 1) > 0) /* until the test closes the pipe */
		;
	_exit(0);
}

static void target_munmap(struct target *t)
{
	if (write(t->cmd, "u", 1) != 1)
		tap_diag("cannot command the target: %s", strerror(errno));
}

/* Read the target's munmap timestamps, waiting at most @ms. */
static int target_times(struct target *t, int ms, uint64_t times[2])
{
	if (!fd_wait_readable(t->rep, ms))
		return -ETIMEDOUT;
	return fd_read_full(t->rep, times, 2 * sizeof(uint64_t)) < 0 ? -EIO : 0;
}

/* ---- the client's callbacks --------------------------------------------------- */

struct ctx {
	int ev[2];                  /* callback -> test: 'i' invalidate, 'r' release */
	int hold[2];                /* test -> callback: let a held callback return */
	bool hold_callback;         /* nonblocking case: block in the callback */
	_Atomic bool ack_later;     /* blocking cases: defer the ack */
	_Atomic uint64_t event_id;  /* the first deferred event */
	_Atomic int nevents;
	_Atomic int release_reason;
	struct mmn_range first;
};

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct ctx *c = ud;

	if (atomic_fetch_add(&c->nevents, 1) == 0) {
		c->first = *r;
		atomic_store(&c->event_id, r->event_id);
	}
	if (write(c->ev[1], "i", 1) != 1)
		return 0;
	if (r->event == MMN_EVENT_UNMAP)
		(void)!write(c->ev[1], "u", 1);
	if (c->hold_callback) {
		char x;

		if (fd_wait_readable(c->hold[0], 10000))
			(void)!read(c->hold[0], &x, 1);
	}
	return atomic_load(&c->ack_later) ? MMN_ACK_LATER : 0;
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct ctx *c = ud;

	atomic_store(&c->release_reason, reason);
	(void)!write(c->ev[1], "r", 1);
}

static void ctx_init(struct ctx *c)
{
	memset(c, 0, sizeof(*c));
	atomic_store(&c->release_reason, -1000);
	if (pipe2(c->ev, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(c->hold, O_CLOEXEC) < 0)
		abort();
}

static void ctx_fini(struct ctx *c)
{
	close(c->ev[0]);
	close(c->ev[1]);
	close(c->hold[0]);
	close(c->hold[1]);
}

/* Wait for callback byte @want, skipping others; 0 or -ETIMEDOUT. */
static int ctx_wait(struct ctx *c, char want, int ms)
{
	return fd_wait_byte(c->ev[0], want, ms);
}

static struct mmn_sub *subscribe(struct mmn_client *cl, struct target *t, struct ctx *c, uint32_t flags,
				 uint32_t timeout_ms)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = flags,
		.ack_timeout_ms = timeout_ms,
		.invalidate = on_invalidate,
		.release = on_release,
		.userdata = c,
	};
	struct mmn_sub *s = NULL;
	int r = mmn_subscribe(cl, t->pid, t->addr, t->len, &o, &s);

	if (!tap_is_int(r, 0, "subscribe to the target's range"))
		return NULL;
	return s;
}

/* ---- the cases ------------------------------------------------------------ */

static void test_blocking(struct mmn_client *cl)
{
	const uint64_t delay = 200 * MS;
	struct target t;
	struct ctx c;
	struct mmn_sub *s;
	uint64_t times[2], t_ack;

	ctx_init(&c);
	atomic_store(&c.ack_later, true);
	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	s = subscribe(cl, &t, &c, MMN_SUB_BLOCKING, 3000);
	if (!s)
		goto out;
	target_munmap(&t);
	tap_is_int(ctx_wait(&c, 'i', 5000), 0, "blocking: the invalidation reaches the client");
	tap_ok(c.first.event == MMN_EVENT_UNMAP && c.first.needs_ack && c.first.blockable,
	       "blocking: UNMAP, blockable, needs an ack");
	tap_ok(c.first.start == t.addr && c.first.end == t.addr + t.len, "blocking: the whole subscribed range");
	tap_ok(!fd_wait_readable(t.rep, 0), "blocking: munmap has not returned before the ack");

	/* The behaviour under test: the client takes its time before acking. */
	struct timespec d = { 0, (long)delay };
	nanosleep(&d, NULL);
	tap_ok(!fd_wait_readable(t.rep, 0), "blocking: munmap still waits after %llu ms", (unsigned long long)(delay / MS));
	t_ack = mono_ns();
	tap_is_int(mmn_ack(s, atomic_load(&c.event_id)), 0, "blocking: ack sent");
	tap_is_int(target_times(&t, 5000, times), 0, "blocking: munmap returned after the ack");
	tap_ok(times[1] >= t_ack, "blocking: munmap returned %lld us after the ack was sent",
	       (long long)(times[1] - t_ack) / 1000);
	tap_ok(times[1] - times[0] >= delay, "blocking: munmap took %llu us >= the %llu ms delay",
	       (unsigned long long)(times[1] - times[0]) / 1000, (unsigned long long)(delay / MS));
	atomic_store(&c.ack_later, false);
	mmn_unsubscribe(s);
out:
	target_end(&t);
	ctx_fini(&c);
}

static void test_silent(struct mmn_client *cl)
{
	const uint64_t deadline = 400 * MS;
	struct target t;
	struct ctx c;
	struct mmn_sub *s;
	uint64_t times[2], took;

	ctx_init(&c);
	atomic_store(&c.ack_later, true);
	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	s = subscribe(cl, &t, &c, MMN_SUB_BLOCKING, (uint32_t)(deadline / MS));
	if (!s)
		goto out;
	target_munmap(&t);
	tap_is_int(ctx_wait(&c, 'i', 5000), 0, "silent: the invalidation reaches the client, which never acks");
	tap_is_int(target_times(&t, 5000, times), 0, "silent: munmap returns without the ack");
	took = times[1] - times[0];
	tap_ok(took >= deadline - 50 * MS, "silent: munmap waited %llu ms, about the %llu ms deadline",
	       (unsigned long long)(took / MS), (unsigned long long)(deadline / MS));
	tap_ok(took < deadline + 900 * MS, "silent: ... and returned by mmnd's eviction, before the module's timeout");
	tap_is_int(ctx_wait(&c, 'r', 5000), 0, "silent: the client is told it was evicted");
	tap_is_int(atomic_load(&c.release_reason), MMN_RELEASE_TIMEOUT, "silent: release reason TIMEOUT");
	mmn_unsubscribe(s);
out:
	target_end(&t);
	ctx_fini(&c);
}

static void test_nonblocking(struct mmn_client *cl)
{
	struct target t;
	struct ctx c;
	struct mmn_sub *s;
	uint64_t times[2];

	ctx_init(&c);
	c.hold_callback = true;
	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	s = subscribe(cl, &t, &c, MMN_SUB_NONBLOCKING, 0);
	if (!s)
		goto out;
	target_munmap(&t);
	tap_is_int(ctx_wait(&c, 'i', 5000), 0, "nonblocking: the invalidation reaches the client");
	tap_ok(!c.first.needs_ack, "nonblocking: no ack asked for");
	/* the callback is still running (held), and munmap must be done regardless */
	tap_is_int(target_times(&t, 5000, times), 0, "nonblocking: munmap returned while the callback still runs");
	tap_ok(times[1] - times[0] < 500 * MS, "nonblocking: munmap took %llu us",
	       (unsigned long long)(times[1] - times[0]) / 1000);
	(void)!write(c.hold[1], "g", 1);
	mmn_unsubscribe(s);
out:
	target_end(&t);
	ctx_fini(&c);
}

/*
 * mmnd dies (SIGKILL) while the kernel waits for its ack: the module sees its
 * socket close (it is close-on-exec, nothing else holds it) and lets munmap
 * go at once instead of at the timeout.
 */
static void test_daemon_death(struct mmn_client *cl, pid_t mmnd)
{
	struct target t;
	struct ctx c;
	struct mmn_sub *s;
	uint64_t times[2], t_kill;
	int st;

	ctx_init(&c);
	atomic_store(&c.ack_later, true);
	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	s = subscribe(cl, &t, &c, MMN_SUB_BLOCKING, 1500);
	if (!s)
		goto out;
	target_munmap(&t);
	tap_is_int(ctx_wait(&c, 'i', 5000), 0, "daemon death: the invalidation reaches the client");
	tap_ok(!fd_wait_readable(t.rep, 0), "daemon death: munmap waits");
	t_kill = mono_ns();
	kill(mmnd, SIGKILL);
	waitpid(mmnd, &st, 0);
	tap_is_int(target_times(&t, 5000, times), 0, "daemon death: munmap returned");
	tap_ok(times[1] - t_kill < 500 * MS, "daemon death: %llu us after SIGKILL, not at the 1.5 s timeout",
	       (unsigned long long)(times[1] > t_kill ? times[1] - t_kill : 0) / 1000);
out:
	target_end(&t);
	ctx_fini(&c);
}

/* ---- mmnd ------------------------------------------------------------------ */

static pid_t start_mmnd_ms(const char *mmnd, const char *sock, const char *timeout, const char *cap);

static pid_t start_mmnd(const char *mmnd, const char *sock)
{
	return start_mmnd_ms(mmnd, sock, "--ack-timeout-ms=1000", "--ack-cap-ms=1500");
}

static pid_t start_mmnd_ms(const char *mmnd, const char *sock, const char *timeout, const char *cap)
{
	const char *args[] = { "--source=kmod", timeout, cap, "--log-level=info", NULL };

	return mmnd_run_at(mmnd, sock, args, 20000);
}

/* ---- lost END: mmnd's queue congested between INVALIDATE and END ---------- */

/*
 * A flood target: FLOOD_PAGES pages, every other one subscribed (separate
 * ksubs, so each INVALIDATE lists FLOOD_PAGES / 2 of them: big messages fill
 * mmnd's queue sooner); on 'f', 500 mmap+munmap cycles of the whole range,
 * then it reports.
 */
#define FLOOD_PAGES 128

static void flood_main(int cmd, int rep, char *p, size_t len)
{
	char c;

	while (fd_read_full(cmd, &c, 1) == 0 && c == 'f') {
		for (int i = 0; i < 500; i++) {
			if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
			    MAP_FAILED)
				_exit(3);
			munmap(p, len);
		}
		if (write(rep, "d", 1) != 1)
			_exit(4);
	}
	_exit(0);
}

/* Subscribe @cl to every other page of flood target @f; 0 or a negative error. */
static int flood_subscribe(struct mmn_client *cl, struct target *f, struct ctx *c, struct mmn_sub **subs)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = MMN_SUB_NONBLOCKING,
		.invalidate = on_invalidate,
		.release = on_release,
		.userdata = c,
	};

	for (int i = 0; i < FLOOD_PAGES / 2; i++) {
		int r = mmn_subscribe(cl, f->pid, f->addr + 2 * (uint64_t)i * ps, ps, &o, &subs[i]);

		if (r)
			return r;
	}
	return 0;
}

/* Rmem and Drops of @pid's generic-netlink socket (/proc/net/netlink); -1 if none. */
static int nl_queue_of(pid_t pid, long long *rmem, long long *drops)
{
	char path[64], line[512], link[64];
	FILE *f = fopen("/proc/net/netlink", "r");
	int found = -1;

	if (!f)
		return -1;
	while (found < 0 && fgets(line, sizeof(line), f)) {
		unsigned long long dr, ino;
		unsigned int eth, port, groups, wmem, dump, locks;
		int rm;

		/* the first column is a kernel pointer, maybe hidden: skipped */
		if (sscanf(line, "%*s %u %u %x %d %u %u %u %llu %llu", &eth, &port, &groups, &rm, &wmem, &dump,
			   &locks, &dr, &ino) != 9 || eth != 16)
			continue;
		snprintf(link, sizeof(link), "socket:[%llu]", ino);
		for (int fd = 0; fd < 64 && found < 0; fd++) {
			char got[64];
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
			n = readlink(path, got, sizeof(got) - 1);
			if (n <= 0)
				continue;
			got[n] = '\0';
			if (!strcmp(got, link)) {
				*rmem = rm;
				*drops = (long long)dr;
				found = 0;
			}
		}
	}
	fclose(f);
	return found;
}

/* Wait, bounded, until @pid's socket satisfies rmem > @rmem_gt or drops > @drops_gt. */
static bool nl_wait(pid_t pid, long long rmem_gt, long long drops_gt, int ms)
{
	uint64_t end = mono_ns() + (uint64_t)ms * MS;
	struct timespec tick = { 0, 5 * (long)MS };
	long long rm, dr;

	do {
		if (nl_queue_of(pid, &rm, &dr) == 0 && (rm > rmem_gt || dr > drops_gt))
			return true;
		nanosleep(&tick, NULL); /* polling a counter: nothing to wait on */
	} while (mono_ns() < end);
	return false;
}

struct reader {
	struct mmn_sub *s;
	int done[2];
};

static void *read_begin_thread(void *arg)
{
	struct reader *r = arg;

	mmn_read_begin(r->s); /* waits while an invalidation of the sub is in flight */
	(void)!write(r->done[1], "q", 1);
	return NULL;
}

/* Flood @f until mmnd's queue dropped a message; false if not within @ms. */
static bool congest(struct target *f, pid_t mmnd, long long drops0, int ms)
{
	uint64_t start = mono_ns(), end = start + (uint64_t)ms * MS;
	long long rm = -1, dr = -1;
	int rounds = 0;
	char x;

	while (mono_ns() < end) {
		if (write(f->cmd, "f", 1) != 1 || !fd_wait_readable(f->rep, 10000) || read(f->rep, &x, 1) != 1)
			return false;
		rounds++;
		if (nl_queue_of(mmnd, &rm, &dr) == 0 && dr > drops0)
			break;
	}
	tap_diag("lost END: %d flood rounds in %llu ms, mmnd's queue %lld bytes, %lld drops", rounds,
		 (unsigned long long)((mono_ns() - start) / MS), rm, dr);
	return dr > drops0;
}

static void test_lost_end(const char *mmnd_path, const char *sock)
{
	struct ctx cb, co, cf;
	struct target t, f;
	struct mmn_client *cl = NULL;
	struct mmn_sub *sb = NULL, *so = NULL, *sf[FLOOD_PAGES / 2] = { 0 };
	struct reader rd = { 0 };
	pthread_t th;
	bool joined = true;
	long long rm0, dr0, rm, dr;
	uint64_t times[2];
	pid_t mmnd;

	tap_require(kt_param("max_ack_timeout_ms", "10000") == 0);
	mmnd = start_mmnd_ms(mmnd_path, sock, "--ack-timeout-ms=10000", "--ack-cap-ms=10000");
	tap_require(mmnd > 0);
	tap_require(mmn_connect(sock, &cl) == 0);
	tap_require(mmn_start_thread(cl) == 0);
	ctx_init(&cb);
	ctx_init(&co);
	ctx_init(&cf);
	atomic_store(&cb.ack_later, true);
	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	tap_require(target_spawn(&f, FLOOD_PAGES * (uint64_t)sysconf(_SC_PAGESIZE), 0, flood_main) == 0);
	sb = subscribe(cl, &t, &cb, MMN_SUB_BLOCKING, 10000);
	so = subscribe(cl, &t, &co, MMN_SUB_NONBLOCKING, 0);
	tap_require(sb && so && flood_subscribe(cl, &f, &cf, sf) == 0);
	tap_require(nl_queue_of(mmnd, &rm0, &dr0) == 0);

	kill(mmnd, SIGSTOP);
	target_munmap(&t);
	tap_ok(nl_wait(mmnd, rm0, dr0, 5000), "lost END: the INVALIDATE is queued for the stopped mmnd");
	if (!congest(&f, mmnd, dr0, 8000) || fd_wait_readable(t.rep, 0)) {
		kill(mmnd, SIGCONT);
		printf("ok %d # SKIP lost END: the flood did not congest mmnd's queue while the kernel waited\n",
		       ++tap_n);
		goto out;
	}
	/* from here on: the kernel's REVOKED(TIMEOUT), then the END, both refused */
	tap_require(nl_queue_of(mmnd, &rm, &dr) == 0);
	tap_is_int(target_times(&t, 15000, times), 0, "lost END: munmap returned at the kernel's timeout");
	tap_ok(nl_wait(mmnd, LLONG_MAX, dr + 1, 5000), "lost END: the INVALIDATE_END met the congested queue");
	kill(mmnd, SIGCONT);

	tap_is_int(ctx_wait(&co, 'u', 20000), 0, "lost END: mmnd resumed and passed the munmap on");
	rd.s = so;
	tap_require(pipe2(rd.done, O_CLOEXEC) == 0);
	tap_require(pthread_create(&th, NULL, read_begin_thread, &rd) == 0);
	joined = fd_wait_readable(rd.done[0], 15000);
	tap_ok(joined, "lost END: the event ended well before mmnd's 60 s END timer");
	if (joined)
		pthread_join(th, NULL);
	else
		pthread_detach(th); /* ends when mmnd's timer does */
out:
	if (joined) {
		mmn_unsubscribe(sb);
		mmn_unsubscribe(so);
		for (int i = 0; i < FLOOD_PAGES / 2; i++)
			mmn_unsubscribe(sf[i]);
		mmn_disconnect(cl);
	}
	kill(mmnd, SIGKILL);
	waitpid(mmnd, NULL, 0);
	kt_param("max_ack_timeout_ms", "2000");
	target_end(&t);
	target_end(&f);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/mmn-guest-XXXXXX", sock[200];
	struct mmn_client *cl = NULL;
	pid_t mmnd;
	int st, r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s MMND\n", argv[0]);
		return 2;
	}
	if (geteuid() != 0)
		tap_skip_all("needs root (run in the guest: tests/guest/run-guest)");
	if (!module_loaded())
		tap_skip_all("mmn.ko is not loaded");
	signal(SIGPIPE, SIG_IGN);
	tap_require(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/mmnd.sock", dir);

	mmnd = start_mmnd(argv[1], sock);
	tap_require(mmnd > 0);
	r = mmn_connect(sock, &cl);
	tap_require(r == 0);
	tap_ok(!!(mmn_capabilities(cl) & MMN_CAP_ACKS_HOLD_KERNEL), "mmnd runs the kmod source: acks hold the kernel");
	tap_ok(!!(mmn_capabilities(cl) & MMN_CAP_EVENTS_BEFORE_CHANGE), "... and events precede the change");
	tap_require(mmn_start_thread(cl) == 0);

	test_blocking(cl);
	test_silent(cl);
	test_nonblocking(cl);

	mmn_disconnect(cl);
	kill(mmnd, SIGTERM);
	st = -1;
	r = (int)waitpid(mmnd, &st, 0);
	tap_ok(r == mmnd && WIFEXITED(st) && WEXITSTATUS(st) == 0, "mmnd exits cleanly on SIGTERM (status 0x%x)", st);

	/* a second mmnd, killed while the kernel waits for it */
	mmnd = start_mmnd(argv[1], sock);
	tap_require(mmnd > 0);
	tap_require(mmn_connect(sock, &cl) == 0);
	tap_require(mmn_start_thread(cl) == 0);
	test_daemon_death(cl, mmnd);
	mmn_disconnect(cl);

	test_lost_end(argv[1], sock);

	unlink(sock);
	rmdir(dir);
	return tap_done();
}
