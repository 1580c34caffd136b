// SPDX-License-Identifier: GPL-2.0
/*
 * Lost events: when the daemon's receive buffer is full, an INVALIDATE for
 * a BLOCKING subscription cannot be sent.  The module counts it
 * (SEND_FAILS), does not wait (the munmap returns at once, not at the
 * timeout), marks the subscription DESYNC (GET_SUBS), and the daemon clears
 * it with SET_FLAGS RESYNCED after resynchronising.
 */
#include <errno.h>
#include <stdio.h>

#include "kt.h"
#include "tap.h"

#define P KT_PAGE
#define MS 1000000LL

static uint32_t state_of(struct drv *d, uint32_t id)
{
	struct drv_sub subs[8];
	int n = drv_subs(d, subs, 8);

	for (int i = 0; i < n; i++)
		if (subs[i].id == id)
			return subs[i].state;
	return UINT32_MAX;
}

int main(void)
{
	struct drv *d = kt_bind(2000);
	struct tgt t;
	struct tgt_res r;
	struct drv_ev ev;
	uint64_t base, f0, ev0;
	uint32_t a, b;
	int k, lost = 0;

	tap_require(d);
	tap_require(tgt_start(&t) == 0);
	tap_require(tgt_do(&t, T_MMAP, 0, 4 * P, 0, &r) == 0);
	base = r.val;
	tap_is_int(drv_subscribe(d, t.pid, base, P, 0, 0, &a), 0, "non-blocking subscription A");
	tap_is_int(drv_subscribe(d, t.pid, base + 2 * P, P, MMN_SUB_F_BLOCKING, 3000, &b), 0,
		   "BLOCKING subscription B (3 s timeout)");
	tap_is_int(drv_set_rcvbuf(d, 1), 0, "tiny receive buffer");
	f0 = kt_stat(d, MMN_STATS_A_SEND_FAILS);
	ev0 = kt_stat(d, MMN_STATS_A_EVENTS);

	/* fill the buffer with A's events; the driver reads nothing */
	tap_is_int(tgt_do(&t, T_BENCH, base, 200, 0, &r), 0, "200 munmaps on A, unread");
	tap_is_int(tgt_do(&t, T_MUNMAP, base + 2 * P, P, 0, &r), 0, "munmap on B, buffer full");
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
	tap_is_int(drv_set_flags(d, b, MMN_SUB_F_BLOCKING | MMN_SUB_F_RESYNCED), 0,
		   "SET_FLAGS BLOCKING|RESYNCED");
	tap_is_int(state_of(d, b), MMN_SUB_ST_LIVE, "B LIVE again, DESYNC cleared");
	uint64_t a0 = kt_stat(d, MMN_STATS_A_ACKS);

	tap_is_int(kt_op(d, &t, T_BENCH, base + 2 * P, 1, 0, true, NULL, &r), 0,
		   "next mmap+munmap on B");
	tap_is_int(kt_stat(d, MMN_STATS_A_ACKS) - a0, 1, "it waited for and got its ACK");
	drv_unsubscribe(d, a);
	drv_unsubscribe(d, b);
	tgt_stop(&t);
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
