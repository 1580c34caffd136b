// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark (meson benchmark, suite 'guest'): munmap latency of one touched
 * page in the guest with no subscription, with a non-blocking subscription
 * (event sent, nobody waits) and with a BLOCKING one (the munmap waits for
 * the driver's ACK), and the INVALIDATE -> ACK -> return cost.
 *
 * usage: kmod-bench [ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>

#include "kt.h"
#include "tap.h"

#define P KT_PAGE

static struct drv *d;
static struct target t;
static uint64_t addr;

static void run(const char *what, uint32_t flags, uint64_t n, uint64_t *median)
{
	struct target_res r;
	uint32_t id = 0;

	if (flags != UINT32_MAX)
		tap_require(drv_subscribe(d, t.pid, addr, P, flags, 2000, &id) == 0);
	tap_is_int(kt_op(d, &t, T_BENCH, addr, n, 0, true, NULL, &r), 0, what);
	tap_diag("%-34s median %7.2f us, mean %7.2f us (%llu munmaps)", what, r.val / 1e3,
		 r.val2 / 1e3, (unsigned long long)n);
	*median = r.val;
	if (id)
		drv_unsubscribe(d, id);
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 5000;
	uint64_t none, nonblock, block, ack_ns = 0;
	struct target_res r;
	int i, acks = 0;

	d = kt_bind(2000);
	tap_require(d);
	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, P, 0, &r) == 0);
	addr = r.val;
	run("no subscription", UINT32_MAX, n, &none);
	run("non-blocking subscription", 0, n, &nonblock);
	run("BLOCKING subscription, acked", MMN_SUB_F_BLOCKING, n, &block);

	/* the daemon's side of the round trip: event received -> ACK answered */
	uint32_t id;

	tap_require(drv_subscribe(d, t.pid, addr, P, MMN_SUB_F_BLOCKING, 2000, &id) == 0);
	for (i = 0; i < 200; i++) {
		struct drv_ev ev;

		target_op_send(&t, T_BENCH, addr, 1, 0);
		if (drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 5000) != 1)
			break;
		int64_t t0 = (int64_t)mono_ns();

		if (drv_ack(d, ev.seq) == 0) {
			ack_ns += (int64_t)mono_ns() - t0;
			acks++;
		}
		target_op_recv(&t, &r, 5000);
	}
	drv_unsubscribe(d, id);
	tap_is_int(acks, 200, "ack round trips");
	tap_diag("ratio blocking/none %.2f, non-blocking/none %.2f", (double)block / none,
		 (double)nonblock / none);
	tap_diag("INVALIDATE -> ACK -> return adds %.2f us (median blocking - median none); "
		 "the ACK request itself takes %.2f us", (block - none) / 1e3,
		 acks ? ack_ns / 1e3 / acks : 0.0);
	printf("# RESULT none_us=%.2f nonblock_us=%.2f blocking_us=%.2f ratio=%.2f ack_us=%.2f\n",
	       none / 1e3, nonblock / 1e3, block / 1e3, (double)block / none,
	       acks ? ack_ns / 1e3 / acks : 0.0);
	target_op_stop(&t);
	drv_unbind(d);
	drv_close(d);
	return tap_done();
}
