/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A libnl-genl-3 test driver that plays mmnd towards mmn.ko: one netlink
 * socket that BINDs, sends every command and receives the kernel's events
 * (the module accepts commands only from the bound port).  Events that
 * arrive while a request waits for its answer are queued in order.
 */
#ifndef MMN_TEST_DRV_H
#define MMN_TEST_DRV_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <linux/mmn.h>

#include "lib/child.h" /* mono_ns(): the clock of t_ns */

#define DRV_MAX_SUBS 64

struct drv;
struct nl_msg;

struct drv_ev {
	uint8_t cmd;			/* MMN_CMD_INVALIDATE, _END, RELEASE, REVOKED */
	uint64_t seq;
	uint32_t event, flags, pid, sub_id, reason;
	uint64_t range_start, range_end;
	unsigned int nsubs;
	struct {
		uint32_t id;
		uint64_t start, end;
	} subs[DRV_MAX_SUBS];
	int64_t t_ns;			/* CLOCK_MONOTONIC (mono_ns()) when received */
};

struct drv_sub {
	uint32_t id, pid, flags, state, timeout_ms;
	uint64_t start, length;
};

/* NULL with errno set when the family cannot be resolved. */
struct drv *drv_open(void);
void drv_close(struct drv *d);
int drv_fd(struct drv *d);
uint32_t drv_portid(struct drv *d);
/* Receive buffer size (SO_RCVBUF; the default is 4 MiB). */
int drv_set_rcvbuf(struct drv *d, int bytes);
/* Extack message of the last failed request ("" if none). */
const char *drv_extack(struct drv *d);

/* Each returns 0 or a negative errno from the kernel. */
int drv_bind(struct drv *d, uint32_t timeout_ms);
int drv_unbind(struct drv *d);
int drv_subscribe(struct drv *d, pid_t pid, uint64_t start, uint64_t len,
		  uint32_t flags, uint32_t timeout_ms, uint32_t *id);
int drv_unsubscribe(struct drv *d, uint32_t id);
int drv_set_flags(struct drv *d, uint32_t id, uint32_t flags);
int drv_ack(struct drv *d, uint64_t seq);
/* stats[MMN_STATS_A_*] */
int drv_stats(struct drv *d, uint64_t stats[MMN_STATS_A_MAX + 1]);
/* Number of subscriptions written to out (at most max), or -errno. */
int drv_subs(struct drv *d, struct drv_sub *out, int max);

/* Raw request: a message for cmd to fill with attributes, then send it. */
struct nl_msg *drv_msg(struct drv *d, uint8_t cmd);
int drv_request(struct drv *d, struct nl_msg *msg);

/* 1: *ev filled; 0: nothing within timeout_ms; -errno on error. */
int drv_next(struct drv *d, struct drv_ev *ev, int timeout_ms);
/* Next event of type cmd, dropping others (counted in *dropped if not NULL). */
int drv_next_cmd(struct drv *d, uint8_t cmd, struct drv_ev *ev, int timeout_ms);

#endif
