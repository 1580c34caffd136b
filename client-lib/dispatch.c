/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mmn_dispatch: reads mmnd's packets (without growing the queue) and
 * delivers the queued events to the callbacks.  Callbacks run with no lock
 * held; c->cb_sub names the sub whose callback runs, so mmn_unsubscribe()
 * on another thread waits for it (no callback after unsubscribe returns).
 */
#include <errno.h>

#include "client.h"
#include "conn.h"
#include "dispatch.h"
#include "eventfd.h"
#include "fork.h"
#include "mmn/mmn.h"
#include "queue.h"
#include "seq.h"
#include "sub.h"
#include "util.h"

static struct outstanding *find_out(struct mmn_sub *s, uint64_t event_id)
{
	for (unsigned i = 0; i < s->nout; i++)
		if (s->out[i].event_id == event_id)
			return &s->out[i];
	return NULL;
}

static void drop_out(struct mmn_sub *s, struct outstanding *o)
{
	*o = s->out[--s->nout];
}

/* Run one callback with c->lock released; @s stays pinned by the queue entry. */
#define CALLBACK(c, s, call)                                                                                 \
	do {                                                                                                 \
		(c)->cb_sub = (s);                                                                           \
		pthread_mutex_unlock(&(c)->lock);                                                            \
		call;                                                                                        \
		pthread_mutex_lock(&(c)->lock);                                                              \
		(c)->cb_sub = NULL;                                                                          \
		pthread_cond_broadcast(&(c)->cb_cond);                                                       \
	} while (0)

/*
 * The ack follows the callback unless it said MMN_ACK_LATER; one that owes
 * nothing now joins the run of acks (conn.c), anything else breaks it.
 */
static int deliver_invalidate(struct mmn_client *c, struct mmn_sub *s, struct qev *e)
{
	struct mmn_range *r = &e->r;
	uint64_t gen = c->conn_gen;
	int ret = 0;

	/* Outstanding until its end, for an invalidate_end callback only. */
	if (s->opts.invalidate_end && s->nout < MMN_MAX_OUTSTANDING) {
		s->out[s->nout] = mmn__out_pack(r);
		s->nout++;
	}
	CALLBACK(c, s, ret = s->opts.invalidate(s, r, s->opts.userdata));
	if (s->state == HANDLE_ACTIVE && gen == c->conn_gen && !(r->needs_ack && ret == MMN_ACK_LATER) &&
	    mmn__sub_acks_go(c, s))
		mmn__conn_ack_delivered(c, s->sub_id, e);
	else
		mmn__conn_ack_break(c);
	return 1;
}

static int deliver_end(struct mmn_client *c, struct mmn_sub *s, struct mmn_range *r)
{
	struct outstanding *o = find_out(s, r->event_id);
	struct mmn_range end;

	if (o) {
		end = mmn__out_range(o);
		drop_out(s, o);
	} else {
		end = (struct mmn_range){.start = s->start, .end = s->end, .event_id = r->event_id};
	}
	end.seq = r->seq;
	if (!s->opts.invalidate_end)
		return 0;
	CALLBACK(c, s, s->opts.invalidate_end(s, &end, s->opts.userdata));
	return 1;
}

static int deliver_release(struct mmn_client *c, struct mmn_sub *s, int reason)
{
	s->nout = 0; /* release closes every pairing */
	if (!s->opts.release)
		return 0;
	CALLBACK(c, s, s->opts.release(s, reason, s->opts.userdata));
	return 1;
}

static int deliver_lost(struct mmn_client *c, struct mmn_sub *s)
{
	int n = 0;

	while (s->nout && s->state != HANDLE_GONE) {
		struct mmn_range end = mmn__out_range(&s->out[s->nout - 1]);

		s->nout--;
		end.seq = 0;
		if (s->opts.invalidate_end) {
			CALLBACK(c, s, s->opts.invalidate_end(s, &end, s->opts.userdata));
			n++;
		}
	}
	return n;
}

/*
 * End the delivered invalidations of every sub flagged when the connection
 * was lost (session.c).  Runs when the queue is empty, so after every event
 * queued before the loss and before the next connection's packets are read
 * (RESYNC comes after).
 */
static int deliver_lost_subs(struct mmn_client *c)
{
	struct mmn_sub *s = c->subs;
	int n = 0;

	c->lost_pending = false;
	while (s) {
		struct mmn_sub *next;

		if (!s->lost) {
			s = s->next;
			continue;
		}
		s->lost = false;
		s->refs++; /* the callbacks run unlocked */
		n += deliver_lost(c, s);
		/*
		 * The callbacks may have changed the list: while @s is still on
		 * it its next is current; once removed (a tombstone) start over,
		 * the flags of the subs done are cleared.
		 */
		next = s->state == HANDLE_GONE ? c->subs : s->next;
		mmn__sub_put(s);
		s = next;
	}
	return n;
}

static int deliver_resync(struct mmn_client *c, struct qev *e)
{
	struct mmn_sub *s = e->s;
	int n = 1;

	e->r.event_id = 0;
	CALLBACK(c, s, s->opts.invalidate(s, &e->r, s->opts.userdata));
	if (s->state == HANDLE_GONE)
		return n;
	if (e->type == QEV_RESYNC_FAIL)
		return n + deliver_release(c, s, e->reason);
	if (s->state == HANDLE_ACTIVE && !s->resub_req)
		mmn__seq_publish(s);
	if (s->opts.invalidate_end) {
		CALLBACK(c, s, s->opts.invalidate_end(s, &e->r, s->opts.userdata));
		n++;
	}
	return n;
}

static int deliver(struct mmn_client *c, struct qev *e)
{
	struct mmn_sub *s = e->s;

	if (s->state == HANDLE_GONE) {
		if (e->type == QEV_INVALIDATE)
			mmn__conn_ack_break(c);
		return 0;
	}
	switch (e->type) {
	case QEV_INVALIDATE:
		if (s->state == HANDLE_ACTIVE)
			return deliver_invalidate(c, s, e);
		mmn__conn_ack_break(c);
		return 0;
	case QEV_END:
		return s->state == HANDLE_ACTIVE ? deliver_end(c, s, &e->r) : 0;
	case QEV_RELEASE:
		return deliver_release(c, s, e->reason);
	case QEV_RESYNC:
	case QEV_RESYNC_FAIL:
		return deliver_resync(c, e);
	}
	return 0;
}

/*
 * After each delivery: send the waiting acks once MMN_ACK_WAIT_EVENTS events
 * were delivered since the oldest, unless the event of the open run goes on
 * at the head of the queue and has been held less than MMN_ACK_HOLD_MS (the
 * clock is read once per MMN_ACK_WAIT_EVENTS deliveries).
 */
static void acks_after_delivery(struct mmn_client *c)
{
	const struct qev *next;

	if (!mmn__conn_acks_waiting(c) || ++c->ack_waited < MMN_ACK_WAIT_EVENTS)
		return;
	next = mmn__queue_peek(c);
	if (next && mmn__conn_run_goes_on(c, next)) {
		int64_t now = mmn__now_ms();

		if (!c->ack_held_since)
			c->ack_held_since = now;
		if (now - c->ack_held_since < MMN_ACK_HOLD_MS) {
			c->ack_waited = 0;
			return;
		}
	}
	mmn__conn_flush_acks(c);
}

/* Deliver and read, at most @budget steps; returns the number of callbacks run. */
static int dispatch_locked(struct mmn_client *c, int budget)
{
	struct qev e;
	int n = 0;

	while (budget-- > 0) {
		if (mmn__dequeue(c, &e)) {
			n += deliver(c, &e);
			mmn__sub_put(e.s);
			/* A steady stream never empties the queue: acks wait this long at most. */
			acks_after_delivery(c);
			continue;
		}
		if (c->lost_pending) {
			n += deliver_lost_subs(c);
			continue;
		}
		/* Never grow the queue on the dispatch path: deliver first. */
		if ((!mmn__queue_has_room(c) || mmn__conn_read_packet(c) <= 0) && !c->qlen)
			break;
	}
	/*
	 * The acks of everything delivered go as one AckMany (MMN_MAX_ACKS at
	 * most: mmn__conn_ack() sends a full one at once) when nothing read is
	 * left to deliver, so mmnd is woken once for a burst rather than once a
	 * packet.  With events left (the budget is spent) they wait for the
	 * next call, which wakefd, raised by mmn_dispatch(), brings at once,
	 * and never longer than acks_after_delivery() allows.
	 */
	if (!c->qlen && !c->lost_pending)
		mmn__conn_flush_acks(c);
	return n;
}

MMN_EXPORT int mmn_dispatch(struct mmn_client *c)
{
	return mmn__dispatch(c, MMN_DISPATCH_BUDGET);
}

int mmn__dispatch(struct mmn_client *c, int budget)
{
	int n, r;

	if (!c)
		return -EINVAL;
	if (mmn__forked(c))
		return -ECHILD;
	pthread_mutex_lock(&c->lock);
	if (c->dispatching) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;
	}
	c->dispatching = true;
	c->disp_thread = pthread_self();
	mmn__eventfd_lower(c->wakefd, &c->wake_set);
	if (c->state == CONN_DOWN)
		mmn__conn_timer(c);
	n = dispatch_locked(c, budget);
	if (c->qlen || c->lost_pending || mmn__conn_rx_pending(c))
		mmn__eventfd_raise(c->wakefd, &c->wake_set);
	r = c->pending_error;
	c->pending_error = 0;
	c->dispatching = false;
	pthread_mutex_unlock(&c->lock);
	return r ? r : n;
}
