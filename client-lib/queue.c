/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The event queue between reading mmnd's packets and delivering them to the
 * callbacks: a ring of struct qev, under c->lock.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>

#include "client.h"
#include "error.h"
#include "event-record.h"
#include "eventfd.h"
#include "memory.h"
#include "queue.h"
#include "sub.h"

/* Ring growth: only on threads that may allocate (see the header). */
int mmn__queue_grow(struct mmn_client *c)
{
	size_t cap = c->qcap ? c->qcap * 2 : 256;
	size_t len = (cap * sizeof(struct qev) + 4095) & ~(size_t)4095;
	struct qev *q;

	q = mmn__memory_map(len);
	if (!q)
		return -ENOMEM;
	for (size_t i = 0; i < c->qlen; i++)
		q[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
	if (c->q)
		munmap(c->q, c->qmap_len);
	c->q = q;
	c->qcap = cap;
	c->qmap_len = len;
	c->qhead = 0;
	return 0;
}

/*
 * The dispatch path reads a packet only while this holds: it never grows the
 * ring.  One packet queues at most an event per item of a batch, or two per
 * record of an EventBatch (an Invalidate folded with its end).
 */
_Static_assert(2 * MMN_EVENT_BATCH_MAX <= MMN_BATCH_MAX, "an EventBatch fits the room kept");

bool mmn__queue_has_room(const struct mmn_client *c)
{
	return c->qlen + MMN_BATCH_MAX + 4 <= c->qcap;
}

int mmn__enqueue(struct mmn_client *c, enum qev_type type, struct mmn_sub *s, const struct mmn_range *r,
		 int reason)
{
	struct qev *e;

	if (c->qlen == c->qcap && mmn__queue_grow(c) < 0) {
		mmn__log(LOG_ERR, "mmn: event queue full, dropping the connection");
		return -ENOMEM;
	}
	e = &c->q[(c->qhead + c->qlen) & (c->qcap - 1)];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->s = s;
	e->reason = reason;
	if (r)
		e->r = *r;
	s->refs++;
	c->qlen++;
	/* mmn_dispatch() delivers it, or raises wakefd when it returns with events left. */
	if (!c->dispatching)
		mmn__eventfd_raise(c->wakefd, &c->wake_set);
	return 0;
}

int mmn__enqueue_invalidate(struct mmn_client *c, struct mmn_sub *s, const struct mmn_range *r, uint32_t ord)
{
	int ret = mmn__enqueue(c, QEV_INVALIDATE, s, r, 0);
	struct qev *e;

	if (ret < 0)
		return ret;
	e = &c->q[(c->qhead + c->qlen - 1) & (c->qcap - 1)];
	e->ord = ord;
	e->conn = (uint32_t)c->conn_gen;
	return 0;
}

const struct qev *mmn__queue_peek(const struct mmn_client *c)
{
	return c->qlen ? &c->q[c->qhead] : NULL;
}

bool mmn__dequeue(struct mmn_client *c, struct qev *out)
{
	if (!c->qlen)
		return false;
	*out = c->q[c->qhead];
	c->qhead = (c->qhead + 1) & (c->qcap - 1);
	c->qlen--;
	return true;
}
