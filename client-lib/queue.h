/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The event queue (queue.c): what session.c read from mmnd, waiting for
 * mmn_dispatch() to run the callbacks.  A ring in c->q, under c->lock; it
 * grows only on threads that may allocate, never on the dispatch path.
 */
#ifndef MMN_CLIENT_QUEUE_H
#define MMN_CLIENT_QUEUE_H

#include <stdbool.h>

#include "mmn/mmn.h"

struct mmn_client;
struct mmn_sub;

enum qev_type {
	QEV_INVALIDATE,
	QEV_END,
	QEV_RELEASE,	 /* reason */
	QEV_RESYNC,	 /* reconnected: RESYNC invalidate, attach, end */
	QEV_RESYNC_FAIL, /* reconnected but could not resubscribe: RESYNC invalidate, release(reason) */
};

struct qev {
	enum qev_type type;
	struct mmn_sub *s; /* pinned by s->refs */
	int reason;
	/*
	 * QEV_INVALIDATE: its place among the Invalidates of its event on its
	 * connection (session.c) and that connection ((uint32_t)c->conn_gen),
	 * for AckMany runs (conn.c).
	 */
	uint32_t ord, conn;
	struct mmn_range r;
};

/* Double the ring (mmap'd, pre-faulted, locked): 0 or -ENOMEM. */
int mmn__queue_grow(struct mmn_client *c);
/* True while the ring has room for a few more events without growing. */
bool mmn__queue_has_room(const struct mmn_client *c);
/* Queue an event for @s (pinning it) and, outside mmn_dispatch(), raise c->wakefd; -ENOMEM when full. */
int mmn__enqueue(struct mmn_client *c, enum qev_type type, struct mmn_sub *s, const struct mmn_range *r,
		 int reason);
/* mmn__enqueue() of an Invalidate, the @ord-th of its event on this connection. */
int mmn__enqueue_invalidate(struct mmn_client *c, struct mmn_sub *s, const struct mmn_range *r, uint32_t ord);
/* The oldest event, left queued, or NULL when empty. */
const struct qev *mmn__queue_peek(const struct mmn_client *c);
/* The oldest event into @out (still pinning its sub), false when empty. */
bool mmn__dequeue(struct mmn_client *c, struct qev *out);

#endif
