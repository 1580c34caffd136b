/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fault campaign, in the guest with mmn.ko: a blocking client is SIGSTOPped.
 *
 *   usage: test-mmnd-campaign-sigstop MMND
 *
 * mmnd runs with the kmod source.  A target process maps three ranges R1,
 * R2, R3.  Three clients, each a forked process dispatching on the library
 * thread, subscribe to R1 and R2:
 *   A  gets SIGSTOPped: R1 blocking with ack deadline A_DEADLINE_MS, R2
 *      non-blocking
 *   B  blocking, ack deadline B_DEADLINE_MS: acks at once
 *   C  non-blocking
 * With A stopped, the target munmaps R1: the munmap must return at about
 * A's deadline (not before it, and at most MARGIN_MS after it: mmnd evicts A
 * and lets the kernel go), while B and C receive their invalidations.  Then
 * the target munmaps R2: it must return well before B's deadline, which only
 * B's accepted ack allows.  After SIGCONT, A must learn that it was evicted
 * (release TIMEOUT) and get R2's invalidation; its connection must survive
 * the eviction of one subscription: no RESYNC or release of R2, and a new
 * Subscribe (R3) after the late ack of R1's event works.  B and C must never
 * be released.  Every wait is on a pipe or waitpid with a deadline.
 *
 * Skips when not root or mmn.ko is not loaded (run by tests/guest/run-guest).
 */
#include <errno.h>
#include <signal.h>
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
#include "tap.h"

#define PAGES	      16
#define A_DEADLINE_MS 500
#define B_DEADLINE_MS 2500
#define MARGIN_MS     1000 /* TCG guests are slow; still far below B's deadline */
#define EVENT_MS      5000
#define READY_MS      30000

/* ---- the target ------------------------------------------------------------- */

struct times {
	uint64_t t0, t1; /* mono_ns() around the munmap */
	int ret;
};

static uint64_t range_addr[3], range_len;

/* Maps R1..R3, reports their addresses; on command '0' or '1' munmaps one and reports times. */
static int target_main(void *arg, int rep, int cmd)
{
	char *p[3];
	char c;

	for (int i = 0; i < 3; i++) {
		p[i] = mmap(NULL, range_len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (p[i] == MAP_FAILED)
			return 2;
		memset(p[i], 0x5a, range_len);
		range_addr[i] = (uintptr_t)p[i];
	}
	if (fd_write_all(rep, range_addr, sizeof(range_addr)) < 0)
		return 3;
	while (read(cmd, &c, 1) == 1 && (c == '0' || c == '1')) {
		struct times t;

		t.t0 = mono_ns();
		t.ret = munmap(p[c - '0'], range_len);
		t.t1 = mono_ns();
		if (fd_write_all(rep, &t, sizeof(t)) < 0)
			return 4;
	}
	return 0;
}

/* ---- a client ----------------------------------------------------------------- */

/* What a client tells the parent. */
struct msg {
	char kind; /* 'S' subscribed (reason: error), 'i' invalidation, 'r' released,
		      'p' answer to a probe (reason: mmn_subscribe's result) */
	uint8_t range;
	uint8_t event; /* enum mmn_event */
	uint8_t needs_ack;
	int32_t reason;
	uint64_t start, end;
};

struct client_cfg {
	const char *name;
	uint32_t flags[2]; /* R1, R2 */
	uint32_t deadline_ms;
};

static const char *sock;
static pid_t target_pid;
static int client_rep; /* in a client: its report pipe */

static void send_msg(const struct msg *m)
{
	(void)!fd_write_all(client_rep, m, sizeof(*m));
}

/* Library thread: report, and let the library ack (return 0). */
static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct msg m = {.kind = 'i',
			.range = (uint8_t)(uintptr_t)ud,
			.needs_ack = r->needs_ack,
			.event = (uint8_t)r->event,
			.start = r->start,
			.end = r->end};

	send_msg(&m);
	return 0;
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct msg m = {.kind = 'r', .range = (uint8_t)(uintptr_t)ud, .reason = reason};

	send_msg(&m);
}

static void log_stderr(int prio, const char *msg, void *ud)
{
	fprintf(stderr, "client %s: <%d> %s\n", (const char *)ud, prio, msg);
}

static int client_main(void *arg, int rep, int cmd)
{
	const struct client_cfg *cfg = arg;
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .ack_timeout_ms = cfg->deadline_ms,
				 .invalidate = on_inval,
				 .release = on_release};
	struct msg m = {.kind = 'S'};
	struct mmn_client *c;
	struct mmn_sub *s;
	char x;

	client_rep = rep;
	mmn_set_log_fn(log_stderr, 6, (void *)cfg->name);
	m.reason = mmn_connect(sock, &c);
	if (m.reason == 0)
		m.reason = mmn_start_thread(c);
	for (int i = 0; m.reason == 0 && i < 2; i++) {
		o.flags = cfg->flags[i];
		o.ack_timeout_ms = o.flags == MMN_SUB_BLOCKING ? cfg->deadline_ms : 0;
		o.userdata = (void *)(uintptr_t)i;
		m.reason = mmn_subscribe(c, target_pid, range_addr[i], range_len, &o, &s);
	}
	send_msg(&m);
	if (m.reason < 0)
		return 1;
	while (read(cmd, &x, 1) > 0) { /* until the parent closes the pipe */
		/* 'p': a Subscribe round trip (R3, non-blocking) */
		struct msg p = {.kind = 'p', .range = 2};

		o.flags = MMN_SUB_NONBLOCKING;
		o.ack_timeout_ms = 0;
		o.userdata = (void *)(uintptr_t)2;
		p.reason = mmn_subscribe(c, target_pid, range_addr[2], range_len, &o, &s);
		send_msg(&p);
	}
	mmn_disconnect(c);
	return 0;
}

/* ---- the parent ------------------------------------------------------------ */

struct seen {
	struct child ch;
	int inval[2];	  /* invalidations received per range */
	int needs_ack[2]; /* ... of which asked for an ack */
	int resync[2];	  /* ... of which were RESYNC (the library reconnected) */
	int probe;	  /* the probe's result */
	int released;	  /* release() calls */
	int reason;	  /* the last release reason */
	bool range_ok;	  /* every invalidation covered exactly its range */
};

/* Reads @cl's messages until one of @kind (for @range, or any when < 0) came; false on timeout. */
static bool wait_msg(struct seen *cl, char kind, int range, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	struct msg m;

	for (;;) {
		if (fd_read_deadline(cl->ch.rep, &m, sizeof(m), deadline) < 0)
			return false;
		if (m.kind == 'i' && m.range < 2 && m.event == MMN_EVENT_RESYNC) {
			cl->resync[m.range]++;
		} else if (m.kind == 'i' && m.range < 2) {
			cl->inval[m.range]++;
			cl->needs_ack[m.range] += m.needs_ack;
			if (m.start != range_addr[m.range] || m.end != range_addr[m.range] + range_len)
				cl->range_ok = false;
		} else if (m.kind == 'r') {
			cl->released++;
			cl->reason = m.reason;
		} else if (m.kind == 'p') {
			cl->probe = m.reason;
		}
		if (m.kind == kind && (range < 0 || m.range == range))
			return true;
		if (m.kind == 'S') /* the subscribe verdict */
			return kind == 'S' && m.reason == 0;
	}
}

/* Drains what @cl still says without waiting (after it exited). */
static void drain(struct seen *cl)
{
	while (wait_msg(cl, 0, -1, 0))
		;
}

/* Commands a munmap of range @i and returns how long it took (ms), or -1. */
static long target_munmap(struct child *t, int i, int ms)
{
	struct times tm;
	char c = (char)('0' + i);

	if (fd_write_all(t->cmd, &c, 1) < 0 ||
	    fd_read_deadline(t->rep, &tm, sizeof(tm), mono_ms() + ms) < 0 || tm.ret != 0)
		return -1;
	return (long)((tm.t1 - tm.t0) / 1000000);
}

static bool stop_and_wait(pid_t pid)
{
	int st;

	/* SIGSTOP cannot be blocked or ignored: the stop report follows at once. */
	return kill(pid, SIGSTOP) == 0 && waitpid(pid, &st, WUNTRACED) == pid && WIFSTOPPED(st);
}

static void phase_r1(struct child *t, struct seen *cl)
{
	long took;

	tap_require(stop_and_wait(cl[0].ch.pid));
	tap_ok(1, "A (blocking, %d ms deadline) is stopped", A_DEADLINE_MS);
	took = target_munmap(t, 0, A_DEADLINE_MS + MARGIN_MS + EVENT_MS);
	tap_ok(took >= A_DEADLINE_MS - 50, "munmap of R1 waited for the stopped A: %ld ms, deadline %d ms",
	       took, A_DEADLINE_MS);
	tap_ok(took >= 0 && took <= A_DEADLINE_MS + MARGIN_MS,
	       "... and returned at most %d ms after A's deadline (mmnd evicted A; B's deadline is %d ms)",
	       MARGIN_MS, B_DEADLINE_MS);
	tap_ok(wait_msg(&cl[1], 'i', 0, EVENT_MS), "B received R1's invalidation");
	tap_ok(cl[1].needs_ack[0] == 1 && cl[1].range_ok, "... blocking (needs an ack), exactly R1");
	tap_ok(wait_msg(&cl[2], 'i', 0, EVENT_MS), "C received R1's invalidation");
	tap_ok(cl[2].needs_ack[0] == 0 && cl[2].range_ok, "... non-blocking (no ack asked), exactly R1");
}

static void phase_r2(struct child *t, struct seen *cl)
{
	long took = target_munmap(t, 1, B_DEADLINE_MS + EVENT_MS);

	tap_ok(took >= 0 && took < B_DEADLINE_MS - MARGIN_MS,
	       "munmap of R2 (B and C subscribed) took %ld ms, well before B's %d ms deadline: B's ack was "
	       "accepted",
	       took, B_DEADLINE_MS);
	tap_ok(wait_msg(&cl[1], 'i', 1, EVENT_MS) && cl[1].needs_ack[1] == 1 && cl[1].range_ok,
	       "B received R2's invalidation, blocking");
	tap_ok(wait_msg(&cl[2], 'i', 1, EVENT_MS) && cl[2].needs_ack[1] == 0 && cl[2].range_ok,
	       "C received R2's invalidation, non-blocking");
}

static void phase_cont(struct seen *cl)
{
	tap_require(kill(cl[0].ch.pid, SIGCONT) == 0);
	tap_ok(wait_msg(&cl[0], 'r', 0, EVENT_MS),
	       "after SIGCONT, A is told its R1 subscription was revoked");
	tap_is_int(cl[0].reason, MMN_RELEASE_TIMEOUT, "... for missing its ack deadline (Revoked{timeout})");
	tap_ok(cl[0].inval[1] == 1 || wait_msg(&cl[0], 'i', 1, EVENT_MS), "A received R2's invalidation");
	tap_ok(cl[0].needs_ack[1] == 0 && cl[0].range_ok, "... non-blocking, exactly R2");
	/*
	 * A's library acked R1's event when its callback returned, before the
	 * release callback ran: a Subscribe now is a round trip after that late ack.
	 */
	tap_require(fd_write_all(cl[0].ch.cmd, "p", 1) == 0);
	tap_ok(wait_msg(&cl[0], 'p', -1, EVENT_MS), "A answers a probe");
	tap_is_int(cl[0].probe, 0,
		   "A's connection survives the eviction: a Subscribe after the late ack works");
	tap_ok(cl[0].resync[1] == 0 && cl[0].released == 1,
	       "... and its R2 subscription was neither resynced (%d) nor released (%d releases in all)",
	       cl[0].resync[1], cl[0].released);
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--source=kmod", "--ack-timeout-ms=2000", "--ack-cap-ms=3000",
					   "--log-level=info", NULL};
	static const struct client_cfg cfg[3] = {
		{"A", {MMN_SUB_BLOCKING, MMN_SUB_NONBLOCKING}, A_DEADLINE_MS},
		{"B", {MMN_SUB_BLOCKING, MMN_SUB_BLOCKING}, B_DEADLINE_MS},
		{"C", {MMN_SUB_NONBLOCKING, MMN_SUB_NONBLOCKING}, 0},
	};
	struct seen cl[3] = {0};
	struct mmnd_run m;
	struct child t;

	if (argc < 2)
		tap_skip_all("usage: test-mmnd-campaign-sigstop MMND");
	if (geteuid() != 0)
		tap_skip_all("needs root (run in the guest: tests/guest/run-guest)");
	if (access("/sys/module/mmn", F_OK) != 0)
		tap_skip_all("mmn.ko is not loaded");
	signal(SIGPIPE, SIG_IGN);
	range_len = PAGES * (uint64_t)sysconf(_SC_PAGESIZE);
	tap_require(mmnd_run_init(&m, argv[1]) == 0);
	sock = m.sock;
	tap_require(mmnd_run_start(&m, args, READY_MS) == 0);
	tap_require(child_spawn(&t, target_main, NULL) == 0);
	tap_require(fd_read_deadline(t.rep, range_addr, sizeof(range_addr), mono_ms() + EVENT_MS) == 0);
	target_pid = t.pid;
	for (int i = 0; i < 3; i++) {
		cl[i].range_ok = true;
		tap_require(child_spawn(&cl[i].ch, client_main, (void *)&cfg[i]) == 0);
		if (!tap_ok(wait_msg(&cl[i], 'S', -1, EVENT_MS), "client %s connected and subscribed",
			    cfg[i].name))
			goto out;
	}
	phase_r1(&t, cl);
	phase_r2(&t, cl);
	phase_cont(cl);
	for (int i = 0; i < 3; i++) {
		child_close_cmd(&cl[i].ch);
		int st = child_wait(&cl[i].ch, 10000);

		if (!tap_ok(st == 0, "client %s exits cleanly", cfg[i].name))
			tap_diag("  wait status 0x%x (%s)", st, st < 0 ? strerror(-st) : "");
		drain(&cl[i]);
	}
	tap_ok(cl[1].released == 0 && cl[2].released == 0, "B and C were never released (%d, %d)",
	       cl[1].released, cl[2].released);
	tap_ok(cl[1].resync[0] + cl[1].resync[1] + cl[2].resync[0] + cl[2].resync[1] == 0,
	       "B and C never lost their connection (no RESYNC)");
out:
	for (int i = 0; i < 3; i++)
		child_kill(&cl[i].ch);
	child_kill(&t);
	tap_ok(mmnd_run_kill(&m, SIGTERM, 10000) == 0, "mmnd exits cleanly on SIGTERM");
	mmnd_run_fini(&m);
	return tap_done();
}
