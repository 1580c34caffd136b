/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the module tests: bind a driver, run one target
 * operation while collecting (and optionally acking) the module's events.
 */
#ifndef MMN_TEST_KT_H
#define MMN_TEST_KT_H

#include <stdbool.h>
#include <stdint.h>

#include "drv.h"
#include "lib/target-op.h"

#define KT_PAGE 4096UL
#define KT_MAXEV 256

struct kt_evs {
	int n;
	struct drv_ev ev[KT_MAXEV];
};

/* Open and BIND (exit 77 when the module is not loaded). */
struct drv *kt_bind(uint32_t timeout_ms);
/*
 * Send op to the target; until it returns, collect events and ack every
 * NEEDS_ACK one when ack is set.  Events sent before the operation returned
 * are all in the socket when its result arrives; they are collected too.
 */
int64_t kt_op(struct drv *d, struct target *t, int op, uint64_t addr,
	      uint64_t len, uint64_t arg, bool ack, struct kt_evs *evs,
	      struct target_res *r);
/* Count of events of type cmd in evs; the first one in *first if not NULL. */
int kt_count(const struct kt_evs *evs, uint8_t cmd, const struct drv_ev **first);
/* Wait up to timeout_ms for INVALIDATE_END of seq (other events go to evs). */
bool kt_wait_end(struct drv *d, uint64_t seq, struct kt_evs *evs, int timeout_ms);
/*
 * Wait until every INVALIDATE sent so far has had its INVALIDATE_END (they
 * come from a worker, after the operation returned) and drop every queued
 * message, so that the next check starts from a quiet socket.
 */
bool kt_settle(struct drv *d);
/* Stats delta helpers. */
uint64_t kt_stat(struct drv *d, int which);

#endif
