// SPDX-License-Identifier: GPL-2.0
/*
 * Blocking: a blockable invalidation of a BLOCKING subscription does not
 * return before the daemon's ACK; without one it returns at the timeout
 * (clamped by max_ack_timeout_ms); wrong, duplicate and late ACKs are
 * harmless; UNSUBSCRIBE or clearing BLOCKING releases the waiter; the
 * daemon's own thread never waits; several subscriptions share one wait.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "kt.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE
#define MS 1000000LL

static struct drv *d;

struct setup {
	struct target t;
	uint64_t base;
	uint32_t id;
};

static void setup(struct setup *s, uint32_t timeout_ms)
{
	struct target_res res;

	tap_require(target_op_start(&s->t) == 0);
	tap_require(target_op_do(&s->t, T_MMAP, 0, 16 * P, 0, &res) == 0);
	s->base = res.val;
	tap_require(drv_subscribe(d, s->t.pid, s->base, 8 * P, MMN_SUB_F_BLOCKING,
				  timeout_ms, &s->id) == 0);
}

static void teardown(struct setup *s)
{
	drv_unsubscribe(d, s->id);
	target_op_stop(&s->t);
}

/* Start a munmap of the subscribed range; return its INVALIDATE. */
static int start_munmap(struct setup *s, struct drv_ev *ev)
{
	target_op_send(&s->t, T_MUNMAP, s->base, 4 * P, 0);
	return drv_next_cmd(d, MMN_CMD_INVALIDATE, ev, 10000);
}

static void t_waits_for_ack(void)
{
	struct setup s;
	struct drv_ev ev;
	struct target_res r;
	int64_t t_ack;
	uint64_t w0 = kt_stat(d, MMN_STATS_A_WAITS), a0 = kt_stat(d, MMN_STATS_A_ACKS);

	setup(&s, 5000);
	tap_is_int(start_munmap(&s, &ev), 1, "ack: INVALIDATE received");
	tap_is_int(ev.flags, MMN_EV_F_BLOCKABLE | MMN_EV_F_NEEDS_ACK,
		   "ack: blockable, needs ack");
	tap_is_int(target_op_recv(&s.t, &r, 300), 0, "ack: munmap has not returned 300 ms later");
	t_ack = (int64_t)mono_ns();
	tap_is_int(drv_ack(d, ev.seq), 0, "ack: ACK accepted");
	tap_is_int(target_op_recv(&s.t, &r, 5000), 1, "ack: munmap returns");
	tap_ok(r.t1 >= t_ack, "ack: munmap returned after the ACK was sent");
	tap_ok(r.t1 - t_ack < 2500 * MS, "ack: and promptly, well before the 5 s timeout (%lld us)",
	       (long long)(r.t1 - t_ack) / 1000);
	tap_ok(r.t0 <= ev.t_ns, "ack: munmap started before the event arrived");
	tap_is_int(drv_ack(d, ev.seq), -ENOENT, "ack: duplicate ACK -> ENOENT");
	tap_is_int(kt_stat(d, MMN_STATS_A_WAITS) - w0, 1, "ack: one wait counted");
	tap_is_int(kt_stat(d, MMN_STATS_A_ACKS) - a0, 1, "ack: one ack counted");
	teardown(&s);
}

static void t_wrong_ack(void)
{
	struct setup s;
	struct drv_ev ev;
	struct target_res r;

	setup(&s, 5000);
	tap_is_int(start_munmap(&s, &ev), 1, "wrong ack: INVALIDATE");
	tap_is_int(drv_ack(d, ev.seq + 1000), -ENOENT, "wrong ack: ENOENT");
	tap_is_int(drv_ack(d, 0), -ENOENT, "ack of seq 0: ENOENT");
	tap_is_int(target_op_recv(&s.t, &r, 200), 0, "wrong ack: munmap still waits");
	tap_is_int(drv_ack(d, ev.seq), 0, "right ack accepted");
	tap_is_int(target_op_recv(&s.t, &r, 5000), 1, "munmap returns");
	tap_is_int(r.ret, 0, "munmap succeeded");
	teardown(&s);
}

static void t_timeout(void)
{
	struct setup s;
	struct drv_ev ev, rv;
	struct target_res r;
	struct drv_sub subs[8];
	uint64_t to0 = kt_stat(d, MMN_STATS_A_TIMEOUTS), st0 = kt_stat(d, MMN_STATS_A_STALE_ACKS);
	int n, i, desync = 0;

	setup(&s, 300);
	tap_is_int(start_munmap(&s, &ev), 1, "timeout: INVALIDATE");
	tap_is_int(target_op_recv(&s.t, &r, 5000), 1, "timeout: munmap returns without ACK");
	tap_ok(r.t1 - r.t0 >= 290 * MS, "timeout: not before the 300 ms timeout (%lld ms)",
	       (long long)(r.t1 - r.t0) / MS);
	tap_ok(r.t1 - r.t0 < 3000 * MS, "timeout: soon after it");
	tap_is_int(r.ret, 0, "timeout: munmap succeeded (never fails)");
	tap_is_int(kt_stat(d, MMN_STATS_A_TIMEOUTS) - to0, 1, "timeout: counted");
	tap_is_int(drv_next_cmd(d, MMN_CMD_REVOKED, &rv, 2000), 1, "timeout: REVOKED sent");
	tap_is_int(rv.reason, MMN_REVOKE_TIMEOUT, "timeout: reason TIMEOUT");
	tap_is_int(rv.sub_id, s.id, "timeout: for the subscription");
	n = drv_subs(d, subs, 8);
	for (i = 0; i < n; i++)
		if (subs[i].id == s.id)
			desync = !!(subs[i].state & MMN_SUB_ST_DESYNC);
	tap_ok(desync, "timeout: subscription DESYNC in GET_SUBS");
	tap_is_int(drv_set_flags(d, s.id, MMN_SUB_F_BLOCKING | MMN_SUB_F_RESYNCED), 0,
		   "SET_FLAGS RESYNCED");
	n = drv_subs(d, subs, 8);
	for (i = 0; i < n; i++)
		if (subs[i].id == s.id)
			desync = !!(subs[i].state & MMN_SUB_ST_DESYNC);
	tap_ok(!desync, "RESYNCED clears DESYNC");
	tap_is_int(drv_ack(d, ev.seq), -ENOENT, "late ACK: ENOENT, harmless");
	tap_is_int(kt_stat(d, MMN_STATS_A_STALE_ACKS) - st0, 1, "late ACK counted as stale");
	/* the module still works after all that */
	to0 = kt_stat(d, MMN_STATS_A_TIMEOUTS);
	tap_is_int(kt_op(d, &s.t, T_MUNMAP, s.base + 4 * P, 4 * P, 0, true, NULL, &r), 0,
		   "next munmap, acked");
	tap_is_int(kt_stat(d, MMN_STATS_A_TIMEOUTS), to0, "next munmap did not time out");
	teardown(&s);
}

static void t_cap(void)
{
	struct setup s;
	struct drv_ev ev;
	struct target_res r;
	const char *p = "/sys/module/mmn/parameters/max_ack_timeout_ms";

	if (knob_write(p, "400")) {
		tap_ok(0, "cannot set max_ack_timeout_ms");
		return;
	}
	setup(&s, 10000);
	tap_is_int(start_munmap(&s, &ev), 1, "cap: INVALIDATE");
	tap_is_int(target_op_recv(&s.t, &r, 5000), 1, "cap: munmap returns");
	tap_ok(r.t1 - r.t0 >= 390 * MS && r.t1 - r.t0 < 5000 * MS,
	       "cap: 10 s timeout clamped to 400 ms (%lld ms)", (long long)(r.t1 - r.t0) / MS);
	tap_is_int(knob_write(p, "20000"), -EIO, "max_ack_timeout_ms above 10000 refused");
	tap_is_int(knob_write(p, "0"), -EIO, "max_ack_timeout_ms 0 refused");
	knob_write(p, "2000");
	teardown(&s);
}

static void t_unsubscribe_releases(void)
{
	struct setup s;
	struct drv_ev ev;
	struct target_res r;
	int64_t t;

	setup(&s, 5000);
	tap_is_int(start_munmap(&s, &ev), 1, "unsubscribe: INVALIDATE");
	t = (int64_t)mono_ns();
	tap_is_int(drv_unsubscribe(d, s.id), 0, "UNSUBSCRIBE while a munmap waits");
	tap_ok((int64_t)mono_ns() - t < 2500 * MS, "UNSUBSCRIBE returned at once");
	tap_is_int(target_op_recv(&s.t, &r, 3000), 1, "unsubscribe: munmap returns");
	tap_ok(r.t1 - t < 2500 * MS, "unsubscribe: promptly, before the 5 s timeout (%lld ms)",
	       (long long)(r.t1 - t) / MS);
	target_op_stop(&s.t);
}

static void t_clear_blocking(void)
{
	struct setup s;
	struct drv_ev ev;
	struct target_res r;
	int64_t t;

	setup(&s, 5000);
	tap_is_int(start_munmap(&s, &ev), 1, "clear BLOCKING: INVALIDATE");
	t = (int64_t)mono_ns();
	tap_is_int(drv_set_flags(d, s.id, 0), 0, "SET_FLAGS 0 while a munmap waits");
	tap_is_int(target_op_recv(&s.t, &r, 3000), 1, "clear BLOCKING: munmap returns");
	tap_ok(r.t1 - t < 2500 * MS, "clear BLOCKING: promptly, before the 5 s timeout");
	uint64_t w0 = kt_stat(d, MMN_STATS_A_WAITS);

	tap_is_int(kt_op(d, &s.t, T_MUNMAP, s.base + 4 * P, 4 * P, 0, false, NULL, &r), 0,
		   "next munmap without BLOCKING");
	tap_is_int(kt_stat(d, MMN_STATS_A_WAITS), w0, "it does not wait");
	teardown(&s);
}

static void t_self(void)
{
	struct setup s;
	char path[64];
	int64_t t;
	uint64_t s0 = kt_stat(d, MMN_STATS_A_SELF_SKIPS);
	struct drv_ev ev;

	setup(&s, 5000);
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", s.t.pid);
	t = (int64_t)mono_ns();
	/* the daemon's own thread invalidates the target: must not wait */
	tap_is_int(knob_write(path, "4"), 0, "daemon writes clear_refs of the target");
	tap_ok((int64_t)mono_ns() - t < 2500 * MS, "daemon thread was not made to wait (timeout 5 s)");
	tap_is_int(kt_stat(d, MMN_STATS_A_SELF_SKIPS) - s0, 1, "SELF_SKIPS counted");
	tap_is_int(drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 1000), 1, "event still reported");
	tap_is_int(ev.flags, MMN_EV_F_BLOCKABLE, "without NEEDS_ACK");
	teardown(&s);
}

static void t_shared_wait(void)
{
	struct setup s;
	struct drv_ev ev;
	struct target_res r;
	uint32_t id2;
	uint64_t w0 = kt_stat(d, MMN_STATS_A_WAITS);

	setup(&s, 5000);
	tap_require(drv_subscribe(d, s.t.pid, s.base + 8 * P, 4 * P, MMN_SUB_F_BLOCKING, 5000,
				  &id2) == 0);
	target_op_send(&s.t, T_MUNMAP, s.base, 12 * P, 0);
	tap_is_int(drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 5000), 1, "shared: INVALIDATE");
	tap_is_int(ev.nsubs, 2, "shared: both blocking subscriptions in one event");
	tap_is_int(drv_ack(d, ev.seq), 0, "shared: one ACK");
	tap_is_int(target_op_recv(&s.t, &r, 3000), 1, "shared: munmap returns");
	tap_ok(r.t1 - r.t0 < 2500 * MS, "shared: no second wait (timeout 5 s)");
	tap_is_int(kt_stat(d, MMN_STATS_A_WAITS) - w0, 1, "shared: one wait counted");
	tap_is_int(drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 0), 0, "shared: no second INVALIDATE");
	drv_unsubscribe(d, id2);
	teardown(&s);
}

int main(void)
{
	d = kt_bind(2000);
	tap_require(d);
	t_waits_for_ack();
	t_wrong_ack();
	t_timeout();
	t_cap();
	t_unsubscribe_releases();
	t_clear_blocking();
	t_self();
	t_shared_wait();
	tap_is_int(kt_stat(d, MMN_STATS_A_SEND_FAILS), 0, "no send failure");
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
