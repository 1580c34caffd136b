// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kt.h"

struct drv *kt_bind(uint32_t timeout_ms)
{
	struct drv *d = drv_open();
	int r;

	if (!d) {
		printf("1..0 # SKIP generic netlink family mmn not registered (mmn.ko not loaded: run in the guest)\n");
		exit(77);
	}
	r = drv_bind(d, timeout_ms);
	if (r) {
		printf("# BIND: %s (%s)\n", strerror(-r), drv_extack(d));
		drv_close(d);
		return NULL;
	}
	return d;
}

static void store(struct kt_evs *evs, const struct drv_ev *ev)
{
	if (evs && evs->n < KT_MAXEV)
		evs->ev[evs->n++] = *ev;
}

static void take(struct drv *d, struct drv_ev *ev, bool ack, struct kt_evs *evs)
{
	store(evs, ev);
	if (ack && ev->cmd == MMN_CMD_INVALIDATE &&
	    (ev->flags & MMN_EV_F_NEEDS_ACK))
		drv_ack(d, ev->seq);
}

int64_t kt_op(struct drv *d, struct target *t, int op, uint64_t addr,
	      uint64_t len, uint64_t arg, bool ack, struct kt_evs *evs,
	      struct target_res *r)
{
	struct target_res tmp;
	struct drv_ev ev;

	if (!r)
		r = &tmp;
	if (target_op_send(t, op, addr, len, arg))
		return -999;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = drv_fd(d), .events = POLLIN },
			{ .fd = t->rep, .events = POLLIN },
		};

		while (drv_next(d, &ev, 0) == 1)
			take(d, &ev, ack, evs);
		if (poll(p, 2, 60000) <= 0)
			return -998;
		if (p[1].revents) {
			if (target_op_recv(t, r, 0) != 1)
				return -997;
			break;
		}
		if (drv_next(d, &ev, 0) == 1)
			take(d, &ev, ack, evs);
	}
	while (drv_next(d, &ev, 0) == 1)
		take(d, &ev, ack, evs);
	return r->ret;
}

int kt_count(const struct kt_evs *evs, uint8_t cmd, const struct drv_ev **first)
{
	int n = 0;

	for (int i = 0; i < evs->n; i++) {
		if (evs->ev[i].cmd != cmd)
			continue;
		if (!n && first)
			*first = &evs->ev[i];
		n++;
	}
	return n;
}

bool kt_wait_end(struct drv *d, uint64_t seq, struct kt_evs *evs, int timeout_ms)
{
	int64_t deadline = (int64_t)mono_ns() + (int64_t)timeout_ms * 1000000;
	struct drv_ev ev;

	for (int i = 0; evs && i < evs->n; i++)
		if (evs->ev[i].cmd == MMN_CMD_INVALIDATE_END && evs->ev[i].seq == seq)
			return true;
	for (;;) {
		int64_t left = (deadline - (int64_t)mono_ns()) / 1000000;

		if (left < 0 || drv_next(d, &ev, (int)left) != 1)
			return false;
		store(evs, &ev);
		if (ev.cmd == MMN_CMD_INVALIDATE_END && ev.seq == seq)
			return true;
	}
}

bool kt_settle(struct drv *d)
{
	uint64_t st[MMN_STATS_A_MAX + 1];
	struct drv_ev ev;

	for (int i = 0; i < 1000; i++) {
		if (drv_stats(d, st))
			return false;
		if (st[MMN_STATS_A_ENDS] == st[MMN_STATS_A_EVENTS]) {
			while (drv_next(d, &ev, 0) == 1)
				;
			return true;
		}
		drv_next(d, &ev, 10);
	}
	return false;
}

uint64_t kt_stat(struct drv *d, int which)
{
	uint64_t st[MMN_STATS_A_MAX + 1];

	if (drv_stats(d, st))
		return UINT64_MAX;
	return st[which];
}

