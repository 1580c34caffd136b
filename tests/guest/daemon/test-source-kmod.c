/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source (daemon/source/kmod*.c) against the real mmn.ko, in the
 * guest, without the broker: this program plays the broker, driving the
 * source_ops and receiving its events on a libuv loop.  A forked target maps
 * a range and munmaps it on command, timing the munmap (CLOCK_MONOTONIC).
 *
 * Checks: BIND and -EBUSY for a second daemon; the socket is close-on-exec;
 * SUBSCRIBE gives an id; a blocking ksub's munmap waits for ops->ack()
 * (sent after a deliberate delay) and INVALIDATE carries the clipped range,
 * UNMAP, needs_ack; INVALIDATE_END pairs with it; a non-blocking ksub never
 * waits; SET_FLAGS turns waiting on; a late ack is -ENOENT; target exit is
 * RELEASE; an INVALIDATE_END whose ksubs were all deleted meanwhile (the
 * broker does that at a RELEASE, with the event still in flight) is still
 * passed on; destroy while the kernel waits releases munmap at once and a new
 * source can bind again; an unread flood overruns the socket and the ksub is
 * revoked (DESYNC), events flow again after ksub_resynced; rmmod while bound
 * is SOURCE_LOST(-ENODEV), and then the constructor says -ENOENT.
 *
 * Exits 77 when not root or the module is not loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/mmn.h>
#include <uv.h>

#include "child.h"
#include "kmod-genl.h"
#include "procstat.h"
#include "source.h"
#include "tap.h"
#include "target.h"

#define PAGES 16
#define MS 1000000ull

/* ---- target ------------------------------------------------------------------ */

static void target_main(int cmd, int rep, char *p, size_t len)
{
	uint64_t t[2];
	char c;

	while (fd_read_full(cmd, &c, 1) == 0) {
		if (c == 'u') { /* munmap the upper half: the event is clipped to it */
			t[0] = mono_ns();
			munmap(p + len / 2, len / 2);
			t[1] = mono_ns();
			if (write(rep, t, sizeof(t)) != sizeof(t))
				_exit(4);
		} else if (c == 'U') { /* the lower half */
			t[0] = mono_ns();
			munmap(p, len / 2);
			t[1] = mono_ns();
			if (write(rep, t, sizeof(t)) != sizeof(t))
				_exit(4);
		} else if (c == 'f') { /* flood: 60000 unmaps of the (re-mapped) upper half */
			for (int i = 0; i < 60000; i++) {
				if (mmap(p + len / 2, len / 2, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
					_exit(5);
				munmap(p + len / 2, len / 2);
			}
			t[0] = t[1] = mono_ns();
			if (write(rep, t, sizeof(t)) != sizeof(t))
				_exit(4);
		} else if (c == 'q') {
			_exit(0);
		}
	}
	_exit(0);
}

/* ---- the broker's part ------------------------------------------------------- */

struct bk {
	uv_loop_t loop;
	struct source *s;
	uv_timer_t ack_timer, timeout;
	uv_poll_t rep_poll;
	/* what arrived */
	int ninv, nend, nrel, nrevoked, nlost;
	struct source_event inv;
	struct source_event_sub inv_sub;
	uint64_t end_id;
	uint32_t rel_id;
	/* what to do on INVALIDATE */
	uint64_t ack_delay_ms;  /* 0: ack at once */
	bool destroy_on_inv;
	bool no_ack;            /* leave needs_ack events unacked */
	uint64_t t_ack;
	int ack_ret;
	bool reported, timed_out;
	bool resync_on_revoke; /* like the broker: resynchronise at once */
	uint32_t revoked_id;
	uint32_t revoked_reason;
	int lost_reason;
};

static struct bk B;

static void on_ack_timer(uv_timer_t *h)
{
	B.t_ack = mono_ns();
	B.ack_ret = B.s->ops->ack(B.s, B.inv.event_id);
}

static void emit(const struct source_event *ev, void *ud)
{
	switch (ev->kind) {
	case SOURCE_INVALIDATE:
		B.ninv++;
		B.inv = *ev;
		B.inv_sub = ev->nsubs ? ev->subs[0] : (struct source_event_sub){ 0 };
		if (!ev->needs_ack)
			break;
		if (B.destroy_on_inv || B.no_ack)
			break; /* the test acts from outside the callback */
		if (B.ack_delay_ms)
			uv_timer_start(&B.ack_timer, on_ack_timer, B.ack_delay_ms, 0);
		else
			on_ack_timer(&B.ack_timer);
		break;
	case SOURCE_INVALIDATE_END:
		B.nend++;
		B.end_id = ev->event_id;
		break;
	case SOURCE_RELEASE:
		B.nrel++;
		B.rel_id = ev->subs[0].ksub_id;
		break;
	case SOURCE_REVOKED:
		B.nrevoked++;
		B.revoked_id = ev->subs[0].ksub_id;
		B.revoked_reason = ev->reason;
		if (B.resync_on_revoke)
			B.s->ops->ksub_resynced(B.s, ev->subs[0].ksub_id);
		break;
	case SOURCE_LOST:
		B.nlost++;
		B.lost_reason = (int)ev->reason;
		break;
	}
}

static void on_timeout(uv_timer_t *h)
{
	B.timed_out = true;
}

static void on_rep(uv_poll_t *h, int status, int events)
{
	B.reported = true;
	uv_poll_stop(h);
}

/* Run the loop until *@flag (or @n events counted by *@count) or @ms passed. */
static bool run_until(bool *flag, int *count, int n, int ms)
{
	B.timed_out = false;
	uv_timer_start(&B.timeout, on_timeout, (uint64_t)ms, 0);
	while (!B.timed_out && !(flag && *flag) && !(count && *count >= n))
		uv_run(&B.loop, UV_RUN_ONCE);
	uv_timer_stop(&B.timeout);
	return !B.timed_out;
}

/* Command a munmap and run the loop until the target reports its times. */
static bool munmap_and_wait(struct target *t, char cmd, int ms)
{
	B.reported = false;
	uv_poll_init(&B.loop, &B.rep_poll, t->rep);
	uv_poll_start(&B.rep_poll, UV_READABLE, on_rep);
	if (write(t->cmd, &cmd, 1) != 1)
		return false;
	bool ok = run_until(&B.reported, NULL, 0, ms);

	uv_close((uv_handle_t *)&B.rep_poll, NULL);
	uv_run(&B.loop, UV_RUN_NOWAIT);
	return ok && fd_read_full(t->rep, t->times, sizeof(t->times)) == 0;
}

/* ---- cases ---------------------------------------------------------------------- */

static void test_bind(void)
{
	static bool old[1024];
	struct source *second = NULL;
	bool cloexec;
	int before, after, r;

	before = procstat_self_fds(NULL, old, &cloexec);
	r = mmn__source_kmod_new(&B.loop, emit, NULL, &B.s);
	tap_require(r == 0);
	after = procstat_self_fds(old, NULL, &cloexec);
	tap_ok(after > before && cloexec, "the source's netlink socket is close-on-exec");
	tap_is_str(B.s->caps.name, "kmod", "caps.name");
	r = mmn__source_kmod_new(&B.loop, emit, NULL, &second);
	tap_is_int(r, -EBUSY, "a second daemon cannot bind: -EBUSY");
	tap_is_int(B.s->ops->start(B.s), 0, "start");
}

static void test_blocking(void)
{
	const uint64_t delay = 200;
	struct target t;
	uint32_t id = 0;
	struct source_target st;
	int r;

	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	st = (struct source_target){ .pid = t.pid, .pidfd = -1, .uffd = -1 };
	r = B.s->ops->ksub_add(B.s, &st, t.addr, t.len, true, 3000, &id);
	tap_is_int(r, 0, "SUBSCRIBE a blocking ksub");
	B.ninv = B.nend = 0;
	B.ack_delay_ms = delay;
	B.t_ack = 0;
	tap_ok(munmap_and_wait(&t, 'u', 10000), "munmap of the upper half returned");
	tap_is_int(B.ninv, 1, "one INVALIDATE");
	tap_ok(B.inv.event == MMN_EVENT_UNMAP && B.inv.blockable && B.inv.needs_ack, "UNMAP, blockable, needs_ack");
	tap_ok(B.inv.nsubs == 1 && B.inv_sub.ksub_id == id, "it names our ksub");
	tap_ok(B.inv_sub.start == t.addr + t.len / 2 && B.inv_sub.end == t.addr + t.len,
	       "clipped to the unmapped half [%#llx, %#llx)", (unsigned long long)B.inv_sub.start,
	       (unsigned long long)B.inv_sub.end);
	tap_is_int(B.inv.pid, t.pid, "the target's pid");
	tap_is_int(B.ack_ret, 0, "ack accepted");
	tap_ok(B.t_ack && t.times[1] >= B.t_ack, "munmap returned %lld us after the ack",
	       (long long)(t.times[1] - B.t_ack) / 1000);
	tap_ok(t.times[1] - t.times[0] >= delay * MS, "munmap took %llu us >= %llu ms delay",
	       (unsigned long long)(t.times[1] - t.times[0]) / 1000, (unsigned long long)delay);
	tap_ok(run_until(NULL, &B.nend, 1, 5000) && B.end_id == B.inv.event_id,
	       "INVALIDATE_END with the same event id");
	tap_is_int(B.s->ops->ack(B.s, B.inv.event_id), -ENOENT, "a second ack of that event: -ENOENT");

	/* non-blocking now: the kernel must not wait */
	tap_is_int(B.s->ops->ksub_set_blocking(B.s, id, false), 0, "SET_FLAGS: not blocking");
	B.ninv = 0;
	B.ack_delay_ms = 5000; /* would hold munmap 5 s if the kernel waited */
	tap_ok(munmap_and_wait(&t, 'U', 10000), "munmap of the lower half returned");
	uv_timer_stop(&B.ack_timer);
	tap_ok(t.times[1] - t.times[0] < 500 * MS, "without a blocking consumer munmap did not wait (%llu us)",
	       (unsigned long long)(t.times[1] - t.times[0]) / 1000);
	run_until(NULL, &B.ninv, 1, 2000);
	tap_ok(B.ninv == 1 && !B.inv.needs_ack, "the INVALIDATE still comes, without needs_ack");

	/* target exit: RELEASE */
	B.nrel = 0;
	if (write(t.cmd, "q", 1) != 1)
		tap_diag("write: %s", strerror(errno));
	tap_ok(run_until(NULL, &B.nrel, 1, 5000) && B.rel_id == id, "target exit: RELEASE of our ksub");
	tap_is_int(B.s->ops->ksub_del(B.s, id), 0, "UNSUBSCRIBE the released ksub");
	tap_is_int(B.s->ops->ksub_del(B.s, id), -ENOENT, "a second ksub_del: -ENOENT");
	target_end(&t);
}

/*
 * The broker deletes a ksub while its event is in flight (RELEASE of an
 * exiting target, or a revoked source): the END must still come, or the
 * broker's event would stay open until its last-resort timer.  Here the
 * deletion (UNSUBSCRIBE) is what releases the kernel's wait, so the END
 * always follows it.
 */
static void test_end_after_del(void)
{
	struct source_target st;
	struct target t;
	uint32_t id = 0;
	bool ended;
	int r;

	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	st = (struct source_target){ .pid = t.pid, .pidfd = -1, .uffd = -1 };
	r = B.s->ops->ksub_add(B.s, &st, t.addr, t.len, true, 3000, &id);
	tap_is_int(r, 0, "SUBSCRIBE a blocking ksub (END after its deletion)");
	B.ninv = B.nend = 0;
	B.end_id = 0;
	B.no_ack = true;
	if (write(t.cmd, "u", 1) != 1)
		tap_diag("write: %s", strerror(errno));
	tap_ok(run_until(NULL, &B.ninv, 1, 5000) && B.inv.needs_ack, "INVALIDATE, the kernel waits");
	tap_is_int(B.s->ops->ksub_del(B.s, id), 0, "the ksub is deleted with its event in flight");
	ended = run_until(NULL, &B.nend, 1, 5000);
	tap_ok(ended && B.end_id == B.inv.event_id, "its INVALIDATE_END is still passed on (event %llu, END %llu)",
	       (unsigned long long)B.inv.event_id, (unsigned long long)B.end_id);
	tap_ok(fd_read_full(t.rep, t.times, sizeof(t.times)) == 0 && t.times[1] - t.times[0] < 2500 * MS,
	       "the deletion released the munmap (%llu us)", (unsigned long long)(t.times[1] - t.times[0]) / 1000);
	B.no_ack = false;
	B.s->ops->ack(B.s, B.inv.event_id); /* forget it: the kernel no longer waits (-ENOENT comes back) */
	target_end(&t);
}

static void test_bad_subscribe(void)
{
	struct source_target st = { .pid = getpid(), .pidfd = -1, .uffd = -1 };
	uint32_t id;

	tap_is_int(B.s->ops->ksub_add(B.s, &st, 0x10000, 4096, true, 1000, &id), -EINVAL,
		   "subscribing the daemon's own mm: -EINVAL");
	st.pid = 0x3fffff00;
	tap_is_int(B.s->ops->ksub_add(B.s, &st, 0x10000, 4096, true, 1000, &id), -ESRCH, "unknown pid: -ESRCH");
	st.pid = 2; /* kthreadd */
	tap_ok(B.s->ops->ksub_add(B.s, &st, 0x10000, 4096, true, 1000, &id) < 0, "a kernel thread is refused");
}

/*
 * The receive queue overruns while the loop does not run: the source must
 * revoke (DESYNC) the ksub, and after ksub_resynced events flow again.
 */
static void test_overrun(void)
{
	struct source_target st;
	struct kmod_stats ks0, ks1;
	struct target t;
	uint32_t id = 0;
	int r;

	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	st = (struct source_target){ .pid = t.pid, .pidfd = -1, .uffd = -1 };
	r = B.s->ops->ksub_add(B.s, &st, t.addr, t.len, false, 0, &id);
	tap_is_int(r, 0, "SUBSCRIBE a non-blocking ksub");
	mmn__source_kmod_stats(B.s, &ks0);
	/* the loop does not run while the target floods: the socket fills up */
	if (write(t.cmd, "f", 1) != 1 || fd_read_full(t.rep, t.times, sizeof(t.times)) < 0)
		tap_diag("flood failed");
	B.nrevoked = 0;
	B.resync_on_revoke = true;
	B.ninv = 0;
	run_until(NULL, &B.nrevoked, 1, 20000);
	mmn__source_kmod_stats(B.s, &ks1);
	tap_ok(ks1.overruns > ks0.overruns, "60000 events unread: the receive queue overran (%llu overruns, %llu events read)",
	       (unsigned long long)(ks1.overruns - ks0.overruns), (unsigned long long)(ks1.events - ks0.events));
	tap_ok(B.nrevoked >= 1 && B.revoked_id == id, "the ksub is revoked");
	tap_is_int(B.revoked_reason, 3 /* mmn.v1 REVOKE_DESYNC */, "reason DESYNC");
	/* drain what is left, then events must flow again after the resync */
	B.reported = false;
	run_until(&B.reported, NULL, 0, 300); /* nothing sets it: just run the loop a while */
	B.ninv = 0;
	B.ack_delay_ms = 0;
	tap_ok(munmap_and_wait(&t, 'U', 10000), "munmap of the lower half");
	tap_ok(run_until(NULL, &B.ninv, 1, 5000), "after the resync the next INVALIDATE arrives");
	B.resync_on_revoke = false;
	tap_is_int(B.s->ops->ksub_del(B.s, id), 0, "UNSUBSCRIBE it");
	target_end(&t);
}

static void test_destroy_releases(void)
{
	struct target t;
	struct source_target st;
	uint32_t id = 0;
	uint64_t t0;
	int r;

	tap_require(target_spawn(&t, PAGES * (uint64_t)sysconf(_SC_PAGESIZE), TARGET_FILL, target_main) == 0);
	st = (struct source_target){ .pid = t.pid, .pidfd = -1, .uffd = -1 };
	r = B.s->ops->ksub_add(B.s, &st, t.addr, t.len, true, 3000, &id);
	tap_is_int(r, 0, "SUBSCRIBE another blocking ksub");
	B.ninv = 0;
	B.destroy_on_inv = true;
	if (write(t.cmd, "u", 1) != 1)
		tap_diag("write: %s", strerror(errno));
	if (!tap_ok(run_until(NULL, &B.ninv, 1, 5000), "INVALIDATE arrives; the kernel waits for us")) {
		struct kmod_stats ks;

		mmn__source_kmod_stats(B.s, &ks);
		tap_diag("ksub %u; stats: events %llu acks %llu self_acks %llu stale %llu overruns %llu bad %llu "
			 "reqerr %llu synct %llu; ninv %d nend %d nrel %d nrev %d nlost %d",
			 id, (unsigned long long)ks.events, (unsigned long long)ks.acks_sent,
			 (unsigned long long)ks.self_acks, (unsigned long long)ks.stale_acks,
			 (unsigned long long)ks.overruns, (unsigned long long)ks.bad_messages,
			 (unsigned long long)ks.request_errors, (unsigned long long)ks.sync_timeouts, B.ninv,
			 B.nend, B.nrel, B.nrevoked, B.nlost);
	}
	t0 = mono_ns();
	B.s->ops->destroy(B.s);
	B.s = NULL;
	tap_ok(fd_read_full(t.rep, t.times, sizeof(t.times)) == 0, "munmap returned after destroy");
	tap_ok(t.times[1] - t0 < 1000 * MS, "... %llu us after destroy, not at the 3 s timeout",
	       (unsigned long long)(t.times[1] > t0 ? t.times[1] - t0 : 0) / 1000);
	uv_run(&B.loop, UV_RUN_NOWAIT);
	r = mmn__source_kmod_new(&B.loop, emit, NULL, &B.s);
	tap_is_int(r, 0, "a new source binds again");
	tap_require(r == 0 && B.s->ops->start(B.s) == 0);
	B.destroy_on_inv = false;
	target_end(&t);
}

/*
 * rmmod while bound: the family goes away, the source reports SOURCE_LOST,
 * from nlctrl's DELFAMILY notice or, when that notice was dropped (the
 * socket may still be congested after the overrun test), at the next request.
 */
static void test_rmmod(void)
{
	struct source_target st = { .pid = 1, .pidfd = -1, .uffd = -1 };
	uint32_t id;
	bool notice;
	int r;

	B.nlost = 0;
	r = (int)syscall(SYS_delete_module, "mmn", O_NONBLOCK);
	if (!tap_ok(r == 0, "rmmod mmn while the source is bound (%s)", r ? strerror(errno) : "ok"))
		return;
	notice = run_until(NULL, &B.nlost, 1, 3000);
	if (!notice) {
		tap_diag("no DELFAMILY notice within 3 s: the next request must find out");
		r = B.s->ops->ksub_add(B.s, &st, 0x10000, 4096, false, 0, &id);
		tap_ok(r == -ENODEV, "SUBSCRIBE without the module: -ENODEV (%d)", r);
		run_until(NULL, &B.nlost, 1, 3000);
	}
	tap_is_int(B.nlost, 1, "SOURCE_LOST once after the module went away");
	tap_is_int(B.lost_reason, -ENODEV, "reason -ENODEV");
	{
		struct source *s2 = NULL;

		tap_is_int(mmn__source_kmod_new(&B.loop, emit, NULL, &s2), -ENOENT,
			   "without the module the constructor says -ENOENT (mmnd falls back to uffd)");
	}
}

int main(void)
{
	if (geteuid() != 0)
		tap_skip_all("needs root (run in the guest: tests/guest/run-guest)");
	uv_loop_init(&B.loop);
	{
		struct source *s = NULL;
		int r = mmn__source_kmod_new(&B.loop, emit, NULL, &s);

		if (r == -ENOENT)
			tap_skip_all("the mmn family does not resolve (mmn.ko not loaded)");
		if (r == 0) {
			s->ops->destroy(s);
			uv_run(&B.loop, UV_RUN_NOWAIT);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	uv_timer_init(&B.loop, &B.ack_timer);
	uv_timer_init(&B.loop, &B.timeout);

	test_bind();
	test_bad_subscribe();
	test_blocking();
	test_end_after_del();
	test_destroy_releases();
	test_overrun(); /* the module keeps sending the flood's ENDs for a while */
	test_rmmod();   /* last: the module is gone afterwards */

	if (B.s)
		B.s->ops->destroy(B.s);
	uv_close((uv_handle_t *)&B.ack_timer, NULL);
	uv_close((uv_handle_t *)&B.timeout, NULL);
	uv_run(&B.loop, UV_RUN_DEFAULT);
	tap_is_int(uv_loop_close(&B.loop), 0, "every handle closed");
	return tap_done();
}
