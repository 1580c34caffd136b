// SPDX-License-Identifier: GPL-2.0
/*
 * Lost events: when the daemon's receive buffer is full, an INVALIDATE for
 * a BLOCKING subscription cannot be sent.  The module counts it
 * (SEND_FAILS), does not wait (the munmap returns at once, not at the
 * timeout), marks the subscription DESYNC (GET_SUBS), and the daemon clears
 * it with SET_FLAGS RESYNCED after resynchronising.
 *
 * Lost allocations (module test knob fail_event_alloc): when neither the
 * event nor its REVOKED can be allocated on the invalidate path, the
 * subscription's prebuilt REVOKED(DESYNC) still arrives, and SET_FLAGS
 * RESYNCED re-arms it.  A module built without the test knobs
 * (-Dkmod_test_knobs=false, MMN_KMOD_NO_TEST_KNOBS=1) must not have it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "kt.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE
#define MS 1000000LL

#define FAIL_KNOB "/sys/module/mmn/parameters/fail_event_alloc"

static long knob(void)
{
	FILE *f = fopen(FAIL_KNOB, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Fail the next 2 allocations (the batch, then the REVOKED), munmap c's page. */
static void lose_one(struct drv *d, struct target *t, uint64_t addr, uint32_t c, int op,
		     const char *what)
{
	struct target_res r;
	struct drv_ev ev;
	int n;

	tap_ok(knob_write(FAIL_KNOB, "2") == 0, "%s: fail_event_alloc=2", what);
	tap_ok(target_op_do(t, op, addr, op == T_BENCH ? 1 : KT_PAGE, 0, &r) == 0, "%s: munmap", what);
	/* skip late REVOKEDs of A and B from the overrun above */
	do
		n = drv_next_cmd(d, MMN_CMD_REVOKED, &ev, 5000);
	while (n == 1 && ev.sub_id != c);
	tap_ok(n == 1, "%s: REVOKED arrived (%d)", what, n);
	tap_ok(n == 1 && ev.sub_id == c, "%s: for the subscription", what);
	tap_ok(n == 1 && ev.reason == MMN_REVOKE_DESYNC, "%s: reason DESYNC", what);
	tap_ok(knob() == 0, "%s: both allocations failed, the prebuilt one was sent (knob %ld)",
	       what, knob());
}

static uint32_t state_of(struct drv *d, uint32_t id)
{
	struct drv_sub subs[8];
	int n = drv_subs(d, subs, 8);

	for (int i = 0; i < n; i++)
		if (subs[i].id == id)
			return subs[i].state;
	return UINT32_MAX;
}

/* Overrun the tiny receive buffer with A's events: B's INVALIDATE is lost, B does not wait. */
static void overrun(struct drv *d, struct target *t, uint64_t base, uint32_t a, uint32_t b)
{
	struct target_res r;
	struct drv_ev ev;
	uint64_t f0, ev0;
	int k, lost = 0;

	tap_is_int(drv_set_rcvbuf(d, 1), 0, "tiny receive buffer");
	f0 = kt_stat(d, MMN_STATS_A_SEND_FAILS);
	ev0 = kt_stat(d, MMN_STATS_A_EVENTS);

	/* fill the buffer with A's events; the driver reads nothing */
	tap_is_int(target_op_do(t, T_BENCH, base, 200, 0, &r), 0, "200 munmaps on A, unread");
	tap_is_int(target_op_do(t, T_MUNMAP, base + 2 * P, P, 0, &r), 0, "munmap on B, buffer full");
	tap_ok(r.t1 - r.t0 < 1500 * MS, "B's munmap did not wait for an ACK that cannot come (%lld ms)",
	       (long long)(r.t1 - r.t0) / MS);

	/* drain (the socket reports the overrun as ENOBUFS) */
	for (k = 0; k < 100000; k++) {
		int n = drv_next(d, &ev, 0);

		if (n == -ENOBUFS) {
			lost = 1;
			continue;
		}
		if (n != 1)
			break;
	}
	tap_ok(lost, "the driver saw the overrun (ENOBUFS)");
	tap_require(drv_set_rcvbuf(d, 4 << 20) == 0);
	tap_ok(kt_stat(d, MMN_STATS_A_SEND_FAILS) > f0, "SEND_FAILS counted (%llu)",
	       (unsigned long long)(kt_stat(d, MMN_STATS_A_SEND_FAILS) - f0));
	tap_ok(kt_stat(d, MMN_STATS_A_EVENTS) > ev0, "some events were delivered");
	tap_ok(state_of(d, b) & MMN_SUB_ST_DESYNC, "B is DESYNC in GET_SUBS");
	tap_ok(state_of(d, a) & MMN_SUB_ST_DESYNC, "A is DESYNC in GET_SUBS");
}

/* SET_FLAGS RESYNCED: B is LIVE again and its next invalidation waits for the ACK. */
static void resync(struct drv *d, struct target *t, uint64_t base, uint32_t b)
{
	struct target_res r;
	uint64_t a0;

	tap_is_int(drv_set_flags(d, b, MMN_SUB_F_BLOCKING | MMN_SUB_F_RESYNCED), 0,
		   "SET_FLAGS BLOCKING|RESYNCED");
	tap_is_int(state_of(d, b), MMN_SUB_ST_LIVE, "B LIVE again, DESYNC cleared");
	a0 = kt_stat(d, MMN_STATS_A_ACKS);
	tap_is_int(kt_op(d, t, T_BENCH, base + 2 * P, 1, 0, true, NULL, &r), 0,
		   "next mmap+munmap on B");
	tap_is_int(kt_stat(d, MMN_STATS_A_ACKS) - a0, 1, "it waited for and got its ACK");
}

/*
 * The SUBSCRIBE answer cannot be queued (buffer full): the module must not
 * keep a subscription whose id the daemon never learns.  Neither the answer
 * nor the error ack can arrive; the driver gives up after its 20 s timeout.
 */
static void orphan_subscribe(struct drv *d, struct target *t, uint64_t base)
{
	struct target_res r;
	struct drv_sub subs[8];
	struct drv_ev ev;
	uint32_t orphan = 0;
	int k, n;

	tap_is_int(drv_set_rcvbuf(d, 1), 0, "tiny receive buffer again");
	tap_is_int(target_op_do(t, T_BENCH, base, 200, 0, &r), 0, "200 munmaps on A, unread");
	tap_ok(drv_subscribe(d, t->pid, base + P, P, MMN_SUB_F_BLOCKING, 0, &orphan) != 0,
	       "SUBSCRIBE whose answer cannot be queued fails");
	for (k = drv_next(d, &ev, 0); k == 1 || k == -ENOBUFS; k = drv_next(d, &ev, 0))
		;
	tap_require(drv_set_rcvbuf(d, 4 << 20) == 0);
	n = drv_subs(d, subs, 8);
	tap_is_int(n, 2, "no orphan subscription left (GET_SUBS lists A and B only)");
	tap_is_int((int)kt_stat(d, MMN_STATS_A_SUBS), 2, "SUBS stat is 2");
}

/* Allocation failures: the loss is still reported, and RESYNCED re-arms the fallback. */
static void lost_allocations(struct drv *d, struct target *t, uint64_t base)
{
	uint64_t f0;
	uint32_t c, e = 0;

	if (getenv("MMN_KMOD_NO_TEST_KNOBS")) {
		tap_is_int((int)knob(), -1, "a release build has no fail_event_alloc");
		return;
	}
	tap_is_int((int)knob(), 0, "fail_event_alloc is off by default");
	tap_is_int(drv_subscribe(d, t->pid, base + 3 * P, P, MMN_SUB_F_BLOCKING, 3000, &c), 0,
		   "BLOCKING subscription C");
	f0 = kt_stat(d, MMN_STATS_A_SEND_FAILS);
	lose_one(d, t, base + 3 * P, c, T_MUNMAP, "first loss");
	tap_ok(kt_stat(d, MMN_STATS_A_SEND_FAILS) > f0, "SEND_FAILS counted");
	tap_ok(state_of(d, c) & MMN_SUB_ST_DESYNC, "C is DESYNC in GET_SUBS");
	tap_is_int(drv_set_flags(d, c, MMN_SUB_F_BLOCKING | MMN_SUB_F_RESYNCED), 0,
		   "SET_FLAGS BLOCKING|RESYNCED re-arms the fallback");
	tap_is_int(state_of(d, c), MMN_SUB_ST_LIVE, "C LIVE again");
	lose_one(d, t, base + 3 * P, c, T_BENCH, "second loss");
	tap_ok(state_of(d, c) & MMN_SUB_ST_DESYNC, "C is DESYNC again");
	knob_write(FAIL_KNOB, "0");
	tap_is_int(drv_unsubscribe(d, c), 0, "UNSUBSCRIBE C");
	tap_is_int(drv_subscribe(d, t->pid, base + 3 * P, P, 0, 0, &e), 0,
		   "subscribe the same range again");
	tap_ok(e > c, "a fresh id, not C's (%u after %u)", e, c);
	drv_unsubscribe(d, e);
}

int main(void)
{
	struct drv *d = kt_bind(2000);
	struct target t;
	struct target_res r;
	uint64_t base;
	uint32_t a, b;

	tap_require(d);
	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, 4 * P, 0, &r) == 0);
	base = r.val;
	tap_is_int(drv_subscribe(d, t.pid, base, P, 0, 0, &a), 0, "non-blocking subscription A");
	tap_is_int(drv_subscribe(d, t.pid, base + 2 * P, P, MMN_SUB_F_BLOCKING, 3000, &b), 0,
		   "BLOCKING subscription B (3 s timeout)");
	overrun(d, &t, base, a, b);
	resync(d, &t, base, b);
	orphan_subscribe(d, &t, base);
	lost_allocations(d, &t, base);
	drv_unsubscribe(d, a);
	drv_unsubscribe(d, b);
	target_op_stop(&t);
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
