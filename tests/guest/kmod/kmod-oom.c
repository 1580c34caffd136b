// SPDX-License-Identifier: GPL-2.0
/*
 * Non-blockable: the OOM reaper's invalidation of a subscribed victim in a
 * small memory cgroup is refused (MMN_EV_F_REFUSED, the reaper retries)
 * while a BLOCKING subscription covers the memory, and succeeds once the
 * daemon clears BLOCKING with SET_FLAGS.
 *
 * The victim (tests/lib/oom.h) must outlive the OOM kill for the reaper to
 * run (it waits 2 s for the victim to exit on its own): a second thread of
 * the victim sleeps in an acked invalidation (madvise of a shared mapping,
 * which the reaper skips) until the test acks it at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt.h"
#include "lib/klog.h"
#include "lib/knob.h"
#include "lib/oom.h"
#include "tap.h"

#define P KT_PAGE
#define CG "/sys/fs/cgroup/mmn-oom"

/* The reaper's invalidations of id1 until one is refused; the last one seen in *ev. */
static bool refused_by_reaper(struct drv *d, uint32_t id1, struct drv_ev *ev)
{
	bool refused = false;

	for (int i = 0; i < 100 && !refused; i++) {
		if (drv_next_cmd(d, MMN_CMD_INVALIDATE, ev, 10000) != 1)
			break;
		tap_diag("event %u flags %#x sub %u range %#llx-%#llx", ev->event, ev->flags,
			 ev->subs[0].id, (unsigned long long)ev->range_start,
			 (unsigned long long)ev->range_end);
		if (!(ev->flags & MMN_EV_F_BLOCKABLE) && (ev->flags & MMN_EV_F_REFUSED))
			refused = ev->subs[0].id == id1;
	}
	return refused;
}

/* After BLOCKING was cleared: the reaper's retry on id1 is not refused. */
static bool retried_by_reaper(struct drv *d, uint32_t id1)
{
	struct drv_ev ev;
	bool after = false;

	for (int i = 0; i < 100 && !after; i++) {
		if (drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 3000) != 1)
			break;
		if (!(ev.flags & MMN_EV_F_BLOCKABLE) && ev.subs[0].id == id1)
			after = !(ev.flags & MMN_EV_F_REFUSED);
	}
	return after;
}

/* The kernel log (@kfd, from the test's start) says the reaper reaped @v, and never failed. */
static void check_reaped(int kfd, pid_t v)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "oom_reaper: reaped process %d", v);
	tap_ok(klog_wait(kfd, needle, 5000), "kernel log: \"%s\"", needle);
	lseek(kfd, 0, SEEK_SET);
	tap_ok(!klog_has(kfd, "unable to reap"), "no \"oom_reaper: unable to reap\"");
}

/* Subscribes the victim, starts its blocker: the invalidation that holds it, in *block_ev. */
static void hold_victim(struct drv *d, const struct oom_victim *v, uint32_t *id1, uint32_t *id2,
			struct drv_ev *block_ev)
{
	tap_is_int(drv_subscribe(d, v->t.pid, v->r1, OOM_R1, MMN_SUB_F_BLOCKING, 10000, id1), 0,
		   "BLOCKING subscription on the victim's anonymous memory");
	tap_is_int(drv_subscribe(d, v->t.pid, v->r2, P, MMN_SUB_F_BLOCKING, 10000, id2), 0,
		   "BLOCKING subscription on its shared page");
	tap_require(write(v->t.cmd, "g", 1) == 1);
	tap_is_int(drv_next_cmd(d, MMN_CMD_INVALIDATE, block_ev, 5000), 1,
		   "victim's second thread waits in an invalidation");
	tap_is_int(block_ev->subs[0].id, *id2, "on the shared page");
}

int main(void)
{
	struct drv *d;
	struct drv_ev ev, block_ev;
	struct oom_victim v;
	int st, kfd, r;
	uint32_t id1, id2;
	uint64_t ref0;

	d = kt_bind(2000);
	tap_require(d);
	r = oom_cgroup(CG);
	if (r == -ENODEV)
		tap_skip_all("no cgroup2 memory controller");
	tap_require(r == 0);
	tap_require(knob_write("/sys/module/mmn/parameters/max_ack_timeout_ms", "10000") == 0);
	kfd = klog_open();
	ref0 = kt_stat(d, MMN_STATS_A_NONBLOCK_REFUSED);

	tap_require(oom_victim_spawn(&v, CG) == 0);
	hold_victim(d, &v, &id1, &id2, &block_ev);
	tap_require(write(v.t.cmd, "a", 1) == 1);

	/* OOM kill, then after ~2 s the reaper tries, non-blockable */
	tap_ok(refused_by_reaper(d, id1, &ev),
	       "the reaper's non-blockable invalidation is refused (REFUSED, not BLOCKABLE)");
	tap_is_int(ev.event, MMN_EVENT_UNMAP, "reaper event is UNMAP");
	tap_ok(kt_stat(d, MMN_STATS_A_NONBLOCK_REFUSED) > ref0, "NONBLOCK_REFUSED counted");

	tap_is_int(drv_set_flags(d, id1, 0), 0, "daemon clears BLOCKING (consumers dropped mappings)");
	tap_ok(retried_by_reaper(d, id1), "the reaper's retry is reported and not refused");
	check_reaped(kfd, v.t.pid);

	tap_is_int(drv_ack(d, block_ev.seq), 0, "ACK the second thread's invalidation");
	tap_is_int(waitpid(v.t.pid, &st, 0), v.t.pid, "victim reaped");
	tap_ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "victim was OOM-killed");
	drv_unsubscribe(d, id1);
	drv_unsubscribe(d, id2);
	knob_write("/sys/module/mmn/parameters/max_ack_timeout_ms", "2000");
	rmdir(CG);
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
