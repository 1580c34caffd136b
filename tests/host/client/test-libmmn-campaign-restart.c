/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fault campaign: mmnd (userfaultfd source) is SIGKILLed at random points
 * while libmmn clients churn their subscribed memory, and restarted.
 *
 *   usage: test-libmmn-campaign-restart MMND [ROUNDS]     (default 200 rounds)
 *   MMN_TEST_SEED=N replays a run (the seed is printed first).
 *
 * Three clients, each a forked process (so that a hang shows as a missed
 * deadline, not as a hung test), connect; client 0 dispatches on the library
 * thread (mmn_start_thread), clients 1 and 2 in their own main loop (poll
 * mmn_get_fd, mmn_dispatch), the thread that also changes the memory.
 * Each keeps STABLE subscriptions for its whole life, madvise(MADV_DONTNEED)s
 * pages of them in a loop (REMOVE events) and now and then subscribes a
 * fresh mapping, shrinks it with mremap (UNMAP), moves it with mremap
 * (REMAP), munmaps it and unsubscribes (errors while mmnd is down are
 * expected and counted; only a hang is a failure).
 *
 * One round: every client has reported (pipe) that it is live; the parent
 * waits a random delay drawn from the PRNG (the fault injection point, not
 * a synchronisation), SIGKILLs mmnd, reaps it and starts a new one (waiting
 * for its --ready-fd), then tells each client the round number.  A client
 * answers once each stable subscription has seen its RESYNC for that round
 * and a new invalidation after it.  The parent waits for the answers on the
 * pipes with a deadline; a client that misses it is reported with the
 * operation it is stuck in (shared memory) and the campaign stops there.
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
#include "tap.h"

#define NCLIENTS     3
#define STABLE	     2 /* subscriptions a client keeps all along */
#define STABLE_PAGES 8
#define CHURN_PAGES  4
#define KILL_MAX_US  20000 /* the kill lands 0..20 ms after every client is live */
#define ROUND_MS     10000 /* a client must resync within this after the restart */
#define READY_MS     20000

enum op { OP_IDLE, OP_MADVISE, OP_MMAP, OP_SUBSCRIBE, OP_MREMAP, OP_MUNMAP, OP_UNSUBSCRIBE, OP_NR };
static const char *const op_names[OP_NR] = {"idle (polling its command pipe)",
					    "madvise",
					    "mmap",
					    "mmn_subscribe",
					    "mremap",
					    "munmap",
					    "mmn_unsubscribe"};

/* Per client, in a MAP_SHARED page: written by the client, read by the parent. */
struct cstate {
	_Atomic int op;		/* enum op the main thread is in */
	_Atomic uint64_t op_ms; /* mono_ms() when it entered it */
	_Atomic unsigned resyncs[STABLE];
	_Atomic unsigned invals[STABLE];    /* non-RESYNC invalidations */
	_Atomic unsigned at_resync[STABLE]; /* invals[] when the last RESYNC came */
	_Atomic int released[STABLE];	    /* release() reason + 1000, or 0 */
	_Atomic unsigned churn_ok, churn_err, churn_events;
};

/* A client's answer to a round. */
struct report {
	uint32_t round;
	int32_t status; /* 0, or a negative errno / release reason - 1000 */
};

static struct cstate *states;
static const char *sock;
static uint64_t seed;

/* ---- the client process ------------------------------------------------- */

struct client {
	struct cstate *st;
	struct mmn_client *c;
	struct mmn_sub *sub[STABLE];
	char *mem[STABLE];
	size_t ps;
	uint64_t rng;
	bool self_dispatch; /* poll mmn_get_fd() and mmn_dispatch() in the main loop */
};

static void set_op(struct cstate *st, enum op op)
{
	atomic_store(&st->op_ms, mono_ms());
	atomic_store(&st->op, op);
}

/* Library thread: count; RESYNC marks where "new" invalidations start. */
static int on_stable(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct cstate *st = states + ((uintptr_t)ud >> 8);
	unsigned i = (uintptr_t)ud & 0xff;

	if (r->event == MMN_EVENT_RESYNC) {
		atomic_store(&st->at_resync[i], atomic_load(&st->invals[i]));
		atomic_fetch_add(&st->resyncs[i], 1);
	} else {
		atomic_fetch_add(&st->invals[i], 1);
	}
	return 0;
}

static void on_stable_release(struct mmn_sub *s, int reason, void *ud)
{
	struct cstate *st = states + ((uintptr_t)ud >> 8);

	atomic_store(&st->released[(uintptr_t)ud & 0xff], reason + 1000);
}

static int on_churn(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	atomic_fetch_add(&((struct cstate *)ud)->churn_events, 1);
	return 0;
}

static int client_setup(struct client *cl, int idx)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .invalidate = on_stable, .release = on_stable_release};
	int r = mmn_connect(sock, &cl->c);

	if (r < 0)
		return r;
	r = cl->self_dispatch ? 0 : mmn_start_thread(cl->c);
	for (unsigned i = 0; r == 0 && i < STABLE; i++) {
		cl->mem[i] = mmap(NULL, STABLE_PAGES * cl->ps, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (cl->mem[i] == MAP_FAILED)
			return -errno;
		o.flags = i % 2 ? MMN_SUB_NONBLOCKING : MMN_SUB_BLOCKING;
		o.userdata = (void *)(((uintptr_t)idx << 8) | i);
		r = mmn_subscribe(cl->c, 0, (uintptr_t)cl->mem[i], STABLE_PAGES * cl->ps, &o, &cl->sub[i]);
	}
	return r;
}

/* Subscribe a fresh mapping, shrink it, move it, unmap it, unsubscribe. */
static void client_churn(struct client *cl)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_churn, .userdata = cl->st};
	size_t len = CHURN_PAGES * cl->ps, half = len / 2;
	struct mmn_sub *s = NULL;
	char *p, *dst, *moved;
	int r;

	set_op(cl->st, OP_MMAP);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	dst = mmap(NULL, half, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || dst == MAP_FAILED)
		abort();
	set_op(cl->st, OP_SUBSCRIBE);
	r = mmn_subscribe(cl->c, 0, (uintptr_t)p, len, &o, &s);
	atomic_fetch_add(r == 0 ? &cl->st->churn_ok : &cl->st->churn_err, 1);
	set_op(cl->st, OP_MREMAP);
	if (mremap(p, len, half, 0) != p) /* shrink: UNMAP of the tail */
		abort();
	moved = mremap(p, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, dst); /* REMAP */
	if (moved != dst)
		abort();
	set_op(cl->st, OP_MUNMAP);
	munmap(dst, half);
	set_op(cl->st, OP_UNSUBSCRIBE);
	if (s)
		mmn_unsubscribe(s);
}

/* 0 when every stable subscription resynced @round times and got news since; 1 not yet. */
static int client_check(struct client *cl, uint32_t round)
{
	for (unsigned i = 0; i < STABLE; i++) {
		int rel = atomic_load(&cl->st->released[i]);

		if (rel)
			return -rel; /* < 0: the subscription was released */
		if (atomic_load(&cl->st->resyncs[i]) < round)
			return 1;
		if (atomic_load(&cl->st->invals[i]) <= atomic_load(&cl->st->at_resync[i]))
			return 1;
	}
	return 0;
}

/*
 * Waits up to 2 ms for a command or (self-dispatching clients) for libmmn's
 * fd, dispatching when it is readable.  The 2 ms are pacing: they keep three
 * clients from saturating two cores.  Reads a round number if one is there:
 * 1 got one, 0 none, -1 EOF (finish).
 */
static int client_poll_cmd(struct client *cl, int cmd, uint32_t *round)
{
	struct pollfd p[2] = {{.fd = cmd, .events = POLLIN}, {.fd = mmn_get_fd(cl->c), .events = POLLIN}};
	ssize_t n;

	if (poll(p, cl->self_dispatch ? 2 : 1, 2) <= 0)
		return 0;
	if (cl->self_dispatch && p[1].revents)
		mmn_dispatch(cl->c);
	if (!p[0].revents)
		return 0;
	n = read(cmd, round, sizeof(*round));
	if (n == (ssize_t)sizeof(*round))
		return 1;
	return n == 0 ? -1 : 0;
}

static int client_main(void *arg, int rep, int cmd)
{
	int idx = (int)(intptr_t)arg;
	struct client cl = {.st = states + idx,
			    .ps = (size_t)sysconf(_SC_PAGESIZE),
			    .rng = seed ^ (uint64_t)idx,
			    .self_dispatch = idx > 0};
	uint32_t pending = 0;
	bool want = true; /* round 0: report once live */
	int r;

	signal(SIGPIPE, SIG_IGN);
	r = client_setup(&cl, idx);
	if (r < 0) {
		struct report rp = {0, r};

		fd_write_all(rep, &rp, sizeof(rp));
		return 1;
	}
	for (unsigned long it = 0;; it++) {
		unsigned i = (unsigned)(it % STABLE);

		set_op(cl.st, OP_IDLE);
		r = client_poll_cmd(&cl, cmd, &pending);
		if (r < 0)
			break;
		if (r > 0)
			want = true;
		set_op(cl.st, OP_MADVISE);
		madvise(cl.mem[i] + prng_below(&cl.rng, STABLE_PAGES) * cl.ps, cl.ps, MADV_DONTNEED);
		if (prng_below(&cl.rng, 16) == 0)
			client_churn(&cl);
		r = want ? client_check(&cl, pending) : 1;
		if (r <= 0) {
			struct report rp = {pending, r};

			want = false;
			if (fd_write_all(rep, &rp, sizeof(rp)) < 0)
				break;
		}
	}
	set_op(cl.st, OP_IDLE);
	mmn_disconnect(cl.c);
	return 0;
}

/* ---- the parent ------------------------------------------------------------ */

static const char *const *mmnd_args;

static void describe(int i, uint64_t since_ms)
{
	struct cstate *st = &states[i];
	int op = atomic_load(&st->op);
	uint64_t t = atomic_load(&st->op_ms);

	tap_diag("  client %d: in %s for %llu ms; resyncs %u/%u, invalidations %u/%u (%u/%u since the last "
		 "resync); churn subscribe ok %u, failed %u",
		 i, op >= 0 && op < OP_NR ? op_names[op] : "?", (unsigned long long)(since_ms - t),
		 atomic_load(&st->resyncs[0]), atomic_load(&st->resyncs[1]), atomic_load(&st->invals[0]),
		 atomic_load(&st->invals[1]), atomic_load(&st->invals[0]) - atomic_load(&st->at_resync[0]),
		 atomic_load(&st->invals[1]) - atomic_load(&st->at_resync[1]), atomic_load(&st->churn_ok),
		 atomic_load(&st->churn_err));
}

/*
 * Waits for every client's report of @round, at most ROUND_MS in all.
 * Returns true when all answered 0; otherwise says why, per client.
 */
static bool collect(struct child *cl, uint32_t round)
{
	uint64_t deadline = mono_ms() + ROUND_MS;
	bool ok = true;

	for (int i = 0; i < NCLIENTS; i++) {
		struct report rp;
		int r = fd_read_deadline(cl[i].rep, &rp, sizeof(rp), deadline);

		if (r == -ETIMEDOUT) {
			tap_diag(
				"client %d HUNG: no resync report for round %u within %d ms of the restart "
				"(a client syscall on its subscribed memory never returned after mmnd died?)",
				i, round, ROUND_MS);
			describe(i, mono_ms());
			ok = false;
		} else if (r < 0) {
			tap_diag("client %d died or closed its pipe in round %u (%s)", i, round,
				 strerror(-r));
			ok = false;
		} else if (rp.status != 0 || rp.round != round) {
			if (rp.status <= -500)
				tap_diag(
					"client %d, round %u: a stable subscription was released (reason %d)",
					i, rp.round, -rp.status - 1000);
			else
				tap_diag("client %d, round %u: %s", i, rp.round, strerror(-rp.status));
			ok = false;
		}
	}
	return ok;
}

/* One round: random delay, SIGKILL, restart, collect.  false: stop the campaign. */
static bool round_run(struct mmnd_run *m, struct child *cl, uint32_t round, uint64_t *rng)
{
	uint64_t us = prng_below(rng, KILL_MAX_US);
	struct timespec d = {0, (long)us * 1000};
	int st, r;

	nanosleep(&d, NULL); /* the fault injection point */
	st = mmnd_run_kill(m, SIGKILL, 5000);
	if (!(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
		tap_diag("round %u: mmnd was not killed by the SIGKILL (status %d)", round, st);
		return false;
	}
	r = mmnd_run_start(m, mmnd_args, READY_MS);
	if (r < 0) {
		tap_diag("round %u: mmnd did not restart: %s", round, strerror(-r));
		return false;
	}
	for (int i = 0; i < NCLIENTS; i++)
		if (fd_write_all(cl[i].cmd, &round, sizeof(round)) < 0) {
			tap_diag("round %u: client %d is gone", round, i);
			return false;
		}
	if (!collect(cl, round)) {
		tap_diag("round %u failed; the kill came %llu us after every client was live (seed %llu)",
			 round, (unsigned long long)us, (unsigned long long)seed);
		return false;
	}
	return true;
}

static void stop_clients(struct child *cl, int n, bool check)
{
	for (int i = 0; i < n; i++) {
		child_close_cmd(&cl[i]); /* EOF: finish */
	}
	for (int i = 0; i < n; i++) {
		int st = child_wait(&cl[i], check ? 10000 : 1000);

		if (check && !tap_ok(st == 0, "client %d disconnects and exits cleanly", i)) {
			tap_diag("  wait status %d (%s)", st,
				 st == -ETIMEDOUT ? "still running: hung" : "exited badly");
			describe(i, mono_ms());
		}
		child_kill(&cl[i]);
	}
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--source=uffd", "--ack-timeout-ms=1000", NULL};
	struct child cl[NCLIENTS];
	struct mmnd_run m;
	uint32_t rounds = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 200, done = 0;
	uint64_t rng, t0 = mono_ms();
	int n = 0;

	if (argc < 2)
		tap_skip_all("usage: test-libmmn-campaign-restart MMND [ROUNDS]");
	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd(UFFD_USER_MODE_ONLY) is not available here");
	signal(SIGPIPE, SIG_IGN);
	seed = prng_seed();
	rng = seed;
	tap_diag("seed %llu (replay with MMN_TEST_SEED=%llu), %u rounds", (unsigned long long)seed,
		 (unsigned long long)seed, rounds);
	mmnd_args = args;
	states = mmap(NULL, NCLIENTS * sizeof(*states), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	tap_require(states != MAP_FAILED);
	memset(states, 0, NCLIENTS * sizeof(*states));
	tap_require(mmnd_run_init(&m, argv[1]) == 0);
	sock = m.sock;
	tap_require(mmnd_run_start(&m, mmnd_args, READY_MS) == 0);
	for (; n < NCLIENTS; n++)
		if (child_spawn(&cl[n], client_main, (void *)(intptr_t)n) < 0)
			break;
	if (tap_ok(n == NCLIENTS && collect(cl, 0), "%d clients connected, subscribed, and see invalidations",
		   n)) {
		while (done < rounds && round_run(&m, cl, done + 1, &rng))
			done++;
		tap_ok(done == rounds,
		       "%u/%u SIGKILL+restart rounds: every client resynced (RESYNC on each stable "
		       "subscription, then new invalidations) within %d ms",
		       done, rounds, ROUND_MS);
	}
	tap_diag("%u kills in %llu ms; seed %llu", done + (done < rounds),
		 (unsigned long long)(mono_ms() - t0), (unsigned long long)seed);
	stop_clients(cl, n, done == rounds);
	tap_ok(mmnd_run_kill(&m, SIGTERM, 10000) == 0, "the last mmnd exits cleanly on SIGTERM");
	mmnd_run_fini(&m);
	return tap_done();
}
