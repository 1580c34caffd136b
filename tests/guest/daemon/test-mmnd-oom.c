/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd --source=kmod with a blocking libmmn client on an OOM victim, in the
 * guest (issues 3 and 4): the OOM reaper's non-blockable invalidation is
 * refused by mmn.ko while the client's subscription is BLOCKING; mmnd asks
 * the client to drop its mappings (Invalidate{blockable=false,
 * needs_ack=true}), and after its ack clears BLOCKING, so the reaper's
 * retry succeeds: "oom_reaper: reaped process", never "unable to reap".
 *
 *   usage: test-mmnd-oom MMND
 *
 * The victim, alone in a cgroup with memory.max 48M, must outlive the OOM
 * kill for the reaper to run (it waits 2 s for the victim to exit on its
 * own), as in tests/guest/kmod/kmod-oom.c (tests/lib/oom.h): a second thread
 * of the victim sleeps in a held invalidation (madvise of a shared page,
 * which the reaper skips), held by this client's second, blocking
 * subscription until the end.
 *
 * Skips when not root, without the module, or without cgroup2 memory.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "klog.h"
#include "knob.h"
#include "mmnd-run.h"
#include "oom.h"
#include "tap.h"

#define CG "/sys/fs/cgroup/mmn-mmnd-oom"
#define MS 1000000ull

static long page;

/* ---- the client -------------------------------------------------------------- */

struct ctx {
	int ev[2];		    /* callback -> test */
	_Atomic bool hold;	    /* r2: keep the first invalidation (the blocker) */
	_Atomic uint64_t held_id;   /* its event id */
	_Atomic int refused_asks;   /* r1: blockable=false, needs_ack=true */
	_Atomic int nonblock_tells; /* r1: blockable=false, needs_ack=false (the retry) */
};

static int on_r1(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct ctx *c = ud;

	(void)s;
	if (!r->blockable && r->needs_ack) {
		atomic_fetch_add(&c->refused_asks, 1);
		(void)!write(c->ev[1], "o", 1);
	} else if (!r->blockable) {
		atomic_fetch_add(&c->nonblock_tells, 1);
		(void)!write(c->ev[1], "n", 1);
	}
	return 0; /* mappings dropped: the library acks what needs an ack */
}

static int on_r2(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct ctx *c = ud;

	(void)s;
	if (r->needs_ack && atomic_exchange(&c->hold, false)) {
		atomic_store(&c->held_id, r->event_id);
		(void)!write(c->ev[1], "h", 1);
		return MMN_ACK_LATER;
	}
	return 0;
}

/* Wait for callback byte @want, at most @ms; 0 or -ETIMEDOUT. */
static int ctx_wait(struct ctx *c, char want, int ms)
{
	return fd_wait_byte(c->ev[0], want, ms);
}

static pid_t start_mmnd(const char *mmnd, const char *sock)
{
	/* The held blocker needs a long deadline: the reaper starts 2 s after the kill. */
	const char *args[] = {"--source=kmod", "--ack-timeout-ms=1000", "--ack-cap-ms=8000",
			      "--log-level=info", NULL};

	return mmnd_run_at(mmnd, sock, args, 20000);
}

/* Root, the module and a memory cgroup CG capped at 48M without swap; else skips. */
static void setup_cgroup(void)
{
	int r;

	if (geteuid() != 0)
		tap_skip_all("needs root (run in the guest: tests/guest/run-guest)");
	if (access("/sys/module/mmn", F_OK))
		tap_skip_all("mmn.ko is not loaded");
	r = oom_cgroup(CG);
	if (r == -ENODEV)
		tap_skip_all("no cgroup2 memory controller");
	signal(SIGPIPE, SIG_IGN);
	page = sysconf(_SC_PAGESIZE);
	tap_require(r == 0);
	tap_require(knob_write("/sys/module/mmn/parameters/max_ack_timeout_ms", "10000") == 0);
}

/* Blocking subscriptions on the victim's heap (@s1) and on its shared page (@s2). */
static void subscribe_victim(struct mmn_client *cl, const struct oom_victim *v, struct ctx *c,
			     struct mmn_sub **s1, struct mmn_sub **s2)
{
	struct mmn_sub_opts o1 = {.size = sizeof(o1),
				  .flags = MMN_SUB_BLOCKING,
				  .ack_timeout_ms = 5000,
				  .invalidate = on_r1,
				  .userdata = c};
	struct mmn_sub_opts o2 = {.size = sizeof(o2),
				  .flags = MMN_SUB_BLOCKING,
				  .ack_timeout_ms = 8000,
				  .invalidate = on_r2,
				  .userdata = c};

	tap_is_int(mmn_subscribe(cl, v->t.pid, v->r1, OOM_R1, &o1, s1), 0,
		   "blocking subscription on the victim's heap");
	tap_is_int(mmn_subscribe(cl, v->t.pid, v->r2, (uint64_t)page, &o2, s2), 0,
		   "blocking subscription on its shared page");
}

/* The kernel log (@kfd, from the test's start) says the reaper reaped @v, and never failed. */
static void check_reaped(int kfd, pid_t v)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "oom_reaper: reaped process %d", (int)v);
	tap_ok(klog_wait(kfd, needle, 5000), "kernel log: \"%s\"", needle);
	lseek(kfd, 0, SEEK_SET);
	tap_ok(!klog_has(kfd, "unable to reap"), "no \"oom_reaper: unable to reap\"");
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/mmn-oom-XXXXXX", sock[200];
	struct mmn_client *cl = NULL;
	struct mmn_sub *s1 = NULL, *s2 = NULL;
	struct ctx c = {0};
	struct oom_victim v;
	int kfd, st, r;
	pid_t mmnd;

	if (argc < 2) {
		fprintf(stderr, "usage: %s MMND\n", argv[0]);
		return 2;
	}
	setup_cgroup();
	tap_require(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/mmnd.sock", dir);
	tap_require(pipe2(c.ev, O_CLOEXEC | O_NONBLOCK) == 0);
	kfd = klog_open();
	tap_require(kfd >= 0);

	mmnd = start_mmnd(argv[1], sock);
	tap_require(mmnd > 0);
	tap_require(mmn_connect(sock, &cl) == 0);
	tap_ok(!!(mmn_capabilities(cl) & MMN_CAP_ACKS_HOLD_KERNEL), "mmnd runs the kmod source");
	tap_require(mmn_start_thread(cl) == 0);

	tap_require(oom_victim_spawn(&v, CG) == 0);
	subscribe_victim(cl, &v, &c, &s1, &s2);
	atomic_store(&c.hold, true);
	tap_require(write(v.t.cmd, "g", 1) == 1);
	tap_is_int(ctx_wait(&c, 'h', 5000), 0, "the victim's second thread waits in a held invalidation");
	tap_require(write(v.t.cmd, "a", 1) == 1);

	/* OOM kill; ~2 s later the reaper tries, non-blockable: refused, mmnd asks us. */
	tap_is_int(ctx_wait(&c, 'o', 7000), 0,
		   "the client is asked to drop its mappings (blockable=false, needs_ack)");
	tap_is_int(ctx_wait(&c, 'n', 3000), 0,
		   "the reaper's retry after the ack is not refused (blockable=false, no ack asked)");
	check_reaped(kfd, v.t.pid);
	tap_ok(atomic_load(&c.refused_asks) >= 1, "%d refused invalidation(s) reached the blocking client",
	       atomic_load(&c.refused_asks));

	tap_is_int(mmn_ack(s2, atomic_load(&c.held_id)), 0, "ack the held invalidation");
	r = (int)waitpid(v.t.pid, &st, 0);
	tap_ok(r == v.t.pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the victim was OOM-killed");

	mmn_disconnect(cl);
	kill(mmnd, SIGTERM);
	r = (int)waitpid(mmnd, &st, 0);
	tap_ok(r == mmnd && WIFEXITED(st) && WEXITSTATUS(st) == 0, "mmnd exits cleanly (status 0x%x)", st);
	knob_write("/sys/module/mmn/parameters/max_ack_timeout_ms", "2000");
	rmdir(CG);
	unlink(sock);
	rmdir(dir);
	return tap_done();
}
