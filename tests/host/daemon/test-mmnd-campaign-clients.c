/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fault campaign: libmmn clients SIGKILLed at random points against one
 * long-running mmnd (userfaultfd source).
 *
 *   usage: test-mmnd-campaign-clients MMND [KILLS [no-rss]]     (default 500)
 *   no-rss skips the RSS check (sanitizer builds keep freed memory).
 *   MMN_TEST_SEED=N replays a run (the seed is printed first).
 *
 * A victim is a forked process that connects, subscribes two ranges of its
 * own memory (one blocking, one non-blocking), then madvise()s them in a
 * loop, dispatching on its own thread and acking every event itself
 * (MMN_ACK_LATER, mmn_ack).  Before each step it writes the step's letter
 * to a pipe and stores it in shared memory.  Per victim the parent draws a
 * step to aim at (connect, subscribe, the event loop, or none) and a random
 * delay; it waits for that step's letter on the pipe (bounded), waits the
 * delay (the fault injection point, not a synchronisation) and SIGKILLs the
 * victim, recording the step the victim was really in.
 *
 * Meanwhile a healthy client (another process, library thread) maps,
 * subscribes, munmaps and unsubscribes in a loop, timing each munmap and
 * waiting (bounded) for its UNMAP callback: no munmap may take longer than
 * MUNMAP_DEADLINE_MS and no event may be missing.
 *
 * Afterwards mmnd's descriptors (/proc/PID/fd) must be back to the baseline
 * taken after a warm-up (exactly: every victim's socket, userfaultfd and
 * pidfd closed), and its RSS within RSS_TOLERANCE_KB of the baseline.  mmnd
 * handles a client's hang-up asynchronously, so the figures are read after
 * probe clients made full round trips (connect, subscribe, exit), up to
 * SETTLE_PROBES of them, not after a sleep.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "child.h"
#include "mmnd-run.h"
#include "prng.h"
#include "procstat.h"
#include "tap.h"

#define PAGES		   8
#define WARMUP		   20
#define MUNMAP_DEADLINE_MS 1000
#define EVENT_MS	   5000 /* the healthy client's UNMAP callback must come within this */
#define STEP_MS		   5000 /* a victim must reach the aimed-at step within this */
#define RSS_TOLERANCE_KB   1024 /* malloc may keep some freed memory */
#define SETTLE_PROBES	   50
#define READY_MS	   20000

/* The victim's steps, in order; also the letters on its pipe. */
static const char steps[] = "CcSsEA";
static const char *const step_names[] = {"in mmn_connect", "connected",		"in mmn_subscribe",
					 "subscribed",	   "in the event loop", "in mmn_ack"};
#define NSTEPS 6

static const char *sock;
static _Atomic char *victim_step; /* shared page: the step the victim is in */

/* ---- a victim --------------------------------------------------------------- */

struct victim {
	struct mmn_sub *sub[2];
	char *mem[2];
	uint64_t pending[2][64]; /* event ids to ack */
	unsigned npending[2];
};

static struct victim victim;

/*
 * On the victim's own thread (mmn_dispatch): ack later, from the loop (the
 * uffd source never needs acks; acking anyway exercises the path).
 */
static int on_victim(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	unsigned i = (unsigned)(uintptr_t)ud;

	if (r->event == MMN_EVENT_RESYNC || victim.npending[i] >= 64)
		return 0;
	victim.pending[i][victim.npending[i]++] = r->event_id;
	return MMN_ACK_LATER;
}

static void step(int rep, int k)
{
	atomic_store(victim_step, steps[k]);
	(void)!write(rep, &steps[k], 1);
}

static int victim_main(void *arg, int rep, int cmd)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .invalidate = on_victim};
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t rng = (uint64_t)(uintptr_t)arg;
	struct mmn_client *c;

	step(rep, 0);
	if (mmn_connect(sock, &c) < 0)
		return 1;
	step(rep, 1);
	for (unsigned i = 0; i < 2; i++) {
		victim.mem[i] = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		o.flags = i ? MMN_SUB_NONBLOCKING : MMN_SUB_BLOCKING;
		o.userdata = (void *)(uintptr_t)i;
		step(rep, 2);
		if (victim.mem[i] == MAP_FAILED ||
		    mmn_subscribe(c, 0, (uintptr_t)victim.mem[i], PAGES * ps, &o, &victim.sub[i]) < 0)
			return 1;
		step(rep, 3);
	}
	for (;;) { /* until killed */
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};

		step(rep, 4);
		for (unsigned i = 0; i < 2; i++)
			madvise(victim.mem[i] + prng_below(&rng, PAGES) * ps, ps, MADV_DONTNEED);
		if (poll(&p, 1, 1) > 0)
			mmn_dispatch(c);
		step(rep, 5);
		for (unsigned i = 0; i < 2; i++)
			while (victim.npending[i])
				mmn_ack(victim.sub[i], victim.pending[i][--victim.npending[i]]);
	}
}

/* ---- the healthy client ------------------------------------------------------ */

struct verdict {
	uint32_t iters, sub_errors, missed_events, slow_munmaps;
	uint64_t max_munmap_us;
};

static int healthy_efd[2]; /* callback -> loop: an UNMAP arrived */

static int on_healthy(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	if (r->event == MMN_EVENT_UNMAP)
		(void)!write(healthy_efd[1], "u", 1);
	return 0;
}

/* One map/subscribe/munmap/unsubscribe cycle. */
static void healthy_cycle(struct mmn_client *c, size_t len, struct verdict *v)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_BLOCKING, .invalidate = on_healthy};
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct mmn_sub *s = NULL;
	uint64_t t0, us;
	char x;
	int r;

	if (p == MAP_FAILED)
		abort();
	r = mmn_subscribe(c, 0, (uintptr_t)p, len, &o, &s);
	v->iters++;
	if (r < 0) {
		v->sub_errors++;
		munmap(p, len);
		return;
	}
	t0 = mono_ns();
	munmap(p, len);
	us = (mono_ns() - t0) / 1000;
	if (us > v->max_munmap_us)
		v->max_munmap_us = us;
	if (us > MUNMAP_DEADLINE_MS * 1000ull)
		v->slow_munmaps++;
	if (fd_read_deadline(healthy_efd[0], &x, 1, mono_ms() + EVENT_MS) < 0)
		v->missed_events++;
	mmn_unsubscribe(s);
}

static int healthy_main(void *arg, int rep, int cmd)
{
	size_t len = PAGES * (size_t)sysconf(_SC_PAGESIZE);
	struct verdict v = {0};
	struct mmn_client *c;
	char x;

	if (pipe(healthy_efd) < 0 || mmn_connect(sock, &c) < 0 || mmn_start_thread(c) < 0)
		return 1;
	(void)!write(rep, "r", 1);
	/* 5 ms of pacing per cycle, listening for the parent's EOF meanwhile. */
	while (!fd_wait_readable(cmd, 5) || read(cmd, &x, 1) > 0)
		healthy_cycle(c, len, &v);
	mmn_disconnect(c);
	return fd_write_all(rep, &v, sizeof(v)) < 0;
}

/* ---- the parent ------------------------------------------------------------ */

/* A probe client: connect, subscribe, exit.  Its exit status is the verdict. */
static int probe_main(void *arg, int rep, int cmd)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_healthy};
	size_t len = (size_t)sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct mmn_client *c;
	struct mmn_sub *s;

	if (p == MAP_FAILED || mmn_connect(sock, &c) < 0 ||
	    mmn_subscribe(c, 0, (uintptr_t)p, len, &o, &s) < 0)
		return 1;
	mmn_disconnect(c);
	return 0;
}

static bool probe(void)
{
	struct child p;
	int st;

	if (child_spawn(&p, probe_main, NULL) < 0)
		return false;
	st = child_wait(&p, 10000);
	child_kill(&p);
	return st == 0;
}

/*
 * Baseline (@fd_max < 0): the lowest figures over 3 probes.  Otherwise
 * probes until mmnd's fd count is at most @fd_max, SETTLE_PROBES times at
 * most.  Returns the figures read.
 */
static void settle(pid_t mmnd, int fd_max, int *fds, long *rss_kb)
{
	*fds = -1;
	for (int i = 0; i < SETTLE_PROBES; i++) {
		int n;
		long kb;

		if (!probe())
			tap_diag("a probe client failed");
		n = procstat_fds(mmnd);
		kb = procstat_rss_kb(mmnd);
		if (*fds < 0 || n < *fds)
			*fds = n;
		if (i == 0 || kb < *rss_kb)
			*rss_kb = kb;
		if (fd_max < 0 ? i >= 2 : *fds <= fd_max)
			return;
	}
}

/* Which step to aim at: connect, subscribe, the event loop, or none (any time). */
static int aim(uint64_t *rng, uint64_t *delay_us)
{
	static const int target[] = {0, 2, 4, -1};
	int t = target[prng_below(rng, 4)];

	*delay_us = prng_below(rng, t == 4 ? 20000 : t < 0 ? 10000 : 1500);
	return t;
}

/* One victim: spawn, wait for the aimed-at step, delay, SIGKILL, reap.  Returns the step at the kill. */
static int victim_run(uint64_t *rng, int *hist, bool *ok)
{
	uint64_t delay, deadline = mono_ms() + STEP_MS;
	int t = aim(rng, &delay), at = -1, st;
	struct child v;
	char x = 0;

	atomic_store(victim_step, 0);
	if (child_spawn(&v, victim_main, (void *)(uintptr_t)prng_next(rng)) < 0) {
		*ok = false;
		return -1;
	}
	while (t >= 0 && x != steps[t])
		if (fd_read_deadline(v.rep, &x, 1, deadline) < 0) {
			tap_diag("victim %d never reached step '%s' (last: '%c')", (int)v.pid, step_names[t],
				 atomic_load(victim_step) ? atomic_load(victim_step) : '-');
			*ok = false;
			break;
		}
	struct timespec d = {0, (long)delay * 1000};
	nanosleep(&d, NULL); /* the fault injection point */
	kill(v.pid, SIGKILL);
	x = atomic_load(victim_step);
	st = child_wait(&v, 10000);
	if (!(st >= 0 && WIFSIGNALED(st))) {
		tap_diag("victim %d: wait status %d (exited by itself before the kill?)", (int)v.pid, st);
		*ok = false;
	}
	child_kill(&v);
	for (int i = 0; i < NSTEPS; i++)
		if (x == steps[i])
			at = i;
	hist[at + 1]++;
	return at;
}

int main(int argc, char **argv)
{
	int kills = argc > 2 ? atoi(argv[2]) : 500, hist[NSTEPS + 1] = {0}, fd0, fd1, st;
	bool check_rss = !(argc > 3 && strcmp(argv[3], "no-rss") == 0);
	long rss0, rss1;
	uint64_t seed, rng, t0 = mono_ms();
	struct verdict hv;
	struct mmnd_run m;
	struct child h;
	bool ok = true;

	if (argc < 2)
		tap_skip_all("usage: test-mmnd-campaign-clients MMND [KILLS [no-rss]]");
	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd(UFFD_USER_MODE_ONLY) is not available here");
	signal(SIGPIPE, SIG_IGN);
	seed = rng = prng_seed();
	tap_diag("seed %llu (replay with MMN_TEST_SEED=%llu), %d kills", (unsigned long long)seed,
		 (unsigned long long)seed, kills);
	victim_step = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tap_require(victim_step != MAP_FAILED);
	tap_require(mmnd_run_init(&m, argv[1]) == 0);
	sock = m.sock;
	tap_require(mmnd_run_start(&m, NULL, READY_MS) == 0);
	tap_require(child_spawn(&h, healthy_main, NULL) == 0);
	tap_require(fd_read_deadline(h.rep, &(char){0}, 1, mono_ms() + 10000) == 0);

	for (int i = 0; i < WARMUP; i++)
		victim_run(&rng, hist, &ok);
	settle(m.pid, -1, &fd0, &rss0);
	tap_diag("baseline after %d warm-up kills: mmnd has %d fds, RSS %ld KiB", WARMUP, fd0, rss0);
	memset(hist, 0, sizeof(hist));
	for (int i = 0; i < kills && ok; i++)
		victim_run(&rng, hist, &ok);
	tap_ok(ok, "%d victims SIGKILLed, each at its random point", kills);
	tap_diag("killed: %d %s, %d %s, %d %s, %d %s, %d %s, %d %s, %d before connecting", hist[1],
		 step_names[0], hist[2], step_names[1], hist[3], step_names[2], hist[4], step_names[3],
		 hist[5], step_names[4], hist[6], step_names[5], hist[0]);
	tap_ok(m.pid > 0 && waitpid(m.pid, &st, WNOHANG) == 0, "mmnd survived");

	settle(m.pid, fd0, &fd1, &rss1);
	tap_ok(fd1 >= 0 && fd1 <= fd0, "mmnd's descriptors back to the baseline: %d, baseline %d", fd1, fd0);
	if (check_rss)
		tap_ok(rss1 > 0 && rss1 <= rss0 + RSS_TOLERANCE_KB,
		       "mmnd's RSS %ld KiB, within %d KiB of the baseline %ld KiB", rss1, RSS_TOLERANCE_KB,
		       rss0);
	else
		tap_ok(1, "mmnd's RSS %ld KiB, baseline %ld KiB # SKIP sanitizer build (quarantined frees)",
		       rss1, rss0);

	child_close_cmd(&h); /* EOF: the healthy client reports */
	tap_require(fd_read_deadline(h.rep, &hv, sizeof(hv), mono_ms() + 10000) == 0);
	tap_diag("healthy client: %u cycles, slowest munmap %llu us", hv.iters,
		 (unsigned long long)hv.max_munmap_us);
	tap_ok(hv.iters > 0 && hv.slow_munmaps == 0,
	       "no munmap of the healthy client took over %d ms (%u did)", MUNMAP_DEADLINE_MS,
	       hv.slow_munmaps);
	tap_ok(hv.missed_events == 0 && hv.sub_errors == 0,
	       "the healthy client got every UNMAP (%u missed, %u "
	       "subscribe errors)",
	       hv.missed_events, hv.sub_errors);
	tap_ok(child_wait(&h, 10000) == 0, "the healthy client exits cleanly");
	child_kill(&h);
	tap_ok(mmnd_run_kill(&m, SIGTERM, 10000) == 0, "mmnd exits cleanly on SIGTERM");
	mmnd_run_fini(&m);
	tap_diag("run time %llu ms", (unsigned long long)(mono_ms() - t0));
	return tap_done();
}
