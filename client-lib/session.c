/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The meaning of mmnd's packets (all under c->lock): HelloReply maps the
 * sequence page, hands over the userfaultfd and resubscribes (resub.c);
 * replies answer the pending request or a re-Subscribe; events are queued for delivery on
 * the dispatching thread.  conn.c hands each packet here through
 * mmn__session_ops, and the loss of the connection too.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "ackring.h"
#include "client.h"
#include "conn.h"
#include "error.h"
#include "event-record.h"
#include "eventfd.h"
#include "queue.h"
#include "resub.h"
#include "seq.h"
#include "session.h"
#include "sub.h"
#include "uffd.h"
#include "util.h"

/* The uffd source: a new userfaultfd for this connection, handed to mmnd. */
static int attach_uffd(struct mmn_client *c)
{
	Mmn__V1__AttachUffd a = MMN__V1__ATTACH_UFFD__INIT;
	MmnEnvelope out = MMN__V1__ENVELOPE__INIT;
	int fd = mmn__uffd_open(c), r;

	if (fd < 0)
		return fd;
	if (!(c->uffd_features & UFFD_FEATURE_EVENT_FORK))
		c->caps &= ~(1ull << MMN_EVENT_PROTECTION_PAGE);
	a.features = c->uffd_features;
	out.body_case = MMN__V1__ENVELOPE__BODY_ATTACH_UFFD;
	out.attach_uffd = &a;
	r = mmn__conn_send(c, &out, &fd, 1);
	/* mmnd holds the only descriptor from now on (see uffd.c). */
	close(fd);
	return r;
}

/*
 * An mmnd that ignores Hello.gen_base gives gens from 1 again, so a value a
 * reader took before could equal a new slot word (mmn.h): once the client
 * was given a gen, each sub is released with -ESTALE, not resubscribed.
 */
static void release_stale(struct mmn_client *c)
{
	for (struct mmn_sub *s = c->subs; s; s = s->next) {
		const struct mmn_range r = {.start = s->start, .end = s->end, .event = MMN_EVENT_RESYNC};

		if (s->state != HANDLE_ACTIVE)
			continue;
		s->state = HANDLE_DEAD;
		mmn__seq_kill(s);
		mmn__enqueue(c, QEV_RESYNC_FAIL, s, &r, -ESTALE);
	}
}

/* Close the HelloReply descriptors @fds[@from..3] that were sent. */
static void close_from(const int *fds, int from)
{
	for (int i = from; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* @fds: the sequence page, the waiter page, the ack ring and its doorbell (-1: not sent), all taken. */
static int handle_hello_reply(struct mmn_client *c, const Mmn__V1__HelloReply *h, int *fds)
{
	int r;

	if (h->version < MMN_PROTO_VERSION_MIN || h->version > MMN_PROTO_VERSION) {
		close_from(fds, 0);
		return -EPROTONOSUPPORT;
	}
	r = mmn__seqpage_map(c, fds[0], h->seqpage_slots);
	if (r < 0) {
		if (c->sp_memfd != fds[0])
			close(fds[0]);
		close_from(fds, 1);
		return r;
	}
	if (fds[1] >= 0) {
		r = mmn__waitpage_map(c, fds[1], h->seqpage_slots);
		if (r < 0) {
			close_from(fds, 2);
			return r;
		}
	}
	/* Without the ring the acks go on the socket, which mmnd reads as well. */
	if (fds[2] >= 0 && (r = mmn__ackring_map(c, fds[2], fds[3])) < 0)
		mmn__log(LOG_DEBUG, "mmn: cannot map the ack ring: %s", mmn_strerror(r));
	c->caps = h->event_mask & ((1ull << (MMN_EVENT_RESYNC + 1)) - 1);
	if (h->acks_hold_kernel)
		c->caps |= MMN_CAP_ACKS_HOLD_KERNEL;
	if (h->events_before_change)
		c->caps |= MMN_CAP_EVENTS_BEFORE_CHANGE;
	if (h->needs_uffd)
		c->caps |= MMN_CAP_SELF_ONLY;
	c->caps |= 1ull << MMN_EVENT_RESYNC; /* the library's own */
	c->needs_uffd = h->needs_uffd;
	c->default_ack_timeout_ms = h->default_ack_timeout_ms;
	c->client_id = h->client_id;
	c->max_batch = h->max_batch;
	c->version = h->version;
	c->ack_runs = h->ack_runs && h->version >= 2;
	snprintf(c->source, sizeof(c->source), "%s", h->source ? h->source : "");
	c->gens_from_base = h->gens_from_base;
	if (!c->gens_from_base && c->gen_max)
		release_stale(c);
	if (c->needs_uffd && !h->registers_uffd) {
		/* An mmnd from before registration moved into it: it would watch nothing. */
		mmn__log(LOG_ERR,
			 "mmn: mmnd does not register userfaultfd ranges (restart it after the upgrade)");
		return -EPROTONOSUPPORT;
	}
	if (c->needs_uffd) {
		r = attach_uffd(c);
		if (r < 0)
			return r;
	}
	return mmn__resub_start(c);
}

/* mmnd made the subscriptions of @mr that nothing will use: undo them. */
static void undo_many(struct mmn_client *c, const Mmn__V1__SubscribeManyReply *mr)
{
	for (size_t i = 0; i < mr->n_results; i++)
		if (!mr->results[i]->error && mr->results[i]->reply)
			mmn__sub_send_unsubscribe(c, mr->results[i]->reply->sub_id);
}

/*
 * The SubscribeManyReply to the pending SubscribeMany: link each item's sub
 * mmnd made (before the next packet, which may be an Invalidate for it) and
 * store each item's result.  Returns 0, or -EPROTO for a reply that does not
 * match the request (then nothing is linked).
 */
static int answer_batch(struct mmn_client *c, const Mmn__V1__SubscribeManyReply *mr)
{
	if (mr->n_results != c->req_nbatch) {
		undo_many(c, mr);
		return -EPROTO;
	}
	for (size_t i = 0; i < mr->n_results; i++) {
		const Mmn__V1__SubscribeResult *res = mr->results[i];
		int err = res->error;

		if (err > 0 || err < -4095 || (!err && !res->reply))
			err = -EPROTO;
		if (!err)
			err = mmn__sub_link(c, c->req_batch[i], res->reply);
		if (!err)
			c->req_batch[i] = NULL;
		c->req_batch_err[i] = err;
	}
	return 0;
}

/* The answer to a Subscribe, @sr or the error @err: links c->req_sub. */
static int answer_one(struct mmn_client *c, int err, const Mmn__V1__SubscribeReply *sr)
{
	if (!sr)
		return err ? err : -EPROTO;
	c->rep.sub_id = sr->sub_id;
	c->rep.slot = sr->seq_slot;
	c->rep.gen = sr->seq_gen;
	c->rep.ack_timeout_ms = sr->ack_timeout_ms;
	if (!c->req_sub)
		return 0;
	/* Before the next packet, which may be an Invalidate for it. */
	err = mmn__sub_link(c, c->req_sub, sr);
	if (!err)
		c->req_sub = NULL;
	return err;
}

/*
 * The reply to the user request c->req_id (@sr, @mr or the error @err),
 * stored in c->rep for its waiter.  A reply of the other kind than the
 * request (a SubscribeReply to a SubscribeMany) is -EPROTO, undone.
 */
static void answer_request(struct mmn_client *c, int err, const Mmn__V1__SubscribeReply *sr,
			   const Mmn__V1__SubscribeManyReply *mr)
{
	if (c->req_batch && sr) {
		mmn__sub_send_unsubscribe(c, sr->sub_id);
		c->rep.err = -EPROTO;
	} else if (c->req_batch) {
		c->rep.err = mr ? answer_batch(c, mr) : err ? err : -EPROTO;
	} else if (mr) {
		undo_many(c, mr);
		c->rep.err = -EPROTO;
	} else {
		c->rep.err = answer_one(c, err, sr);
	}
	c->req_id = 0; /* answered: a connection loss from now on must not overwrite c->rep */
	c->req_done = true;
	mmn__eventfd_signal(c->replyfd);
}

/* SubscribeReply, SubscribeManyReply, UnsubscribeManyReply, Status or Error naming a request. */
static int handle_reply(struct mmn_client *c, const MmnEnvelope *env)
{
	const Mmn__V1__SubscribeReply *sr = NULL;
	const Mmn__V1__SubscribeManyReply *mr = NULL;
	int err = 0;

	if (env->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY)
		sr = env->subscribe_reply;
	else if (env->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY)
		mr = env->subscribe_many_reply;
	else if (env->body_case == MMN__V1__ENVELOPE__BODY_STATUS)
		err = env->status->error;
	else if (env->body_case == MMN__V1__ENVELOPE__BODY_ERROR)
		err = env->error->error;
	if (err > 0 || err < -4095)
		return -EPROTO;
	if (c->state == CONN_HELLO) {
		/*
		 * Only the Hello is outstanding: an error here is mmnd refusing
		 * us, in reply to it or (request_id 0) right at accept.
		 */
		if ((env->request_id != c->hello_req && env->request_id) || !err)
			return -EPROTO;
		return err;
	}
	if (env->request_id && env->request_id == c->req_id) {
		answer_request(c, err, sr, mr);
		return 0;
	}
	if (env->request_id && mmn__resub_is_reply(c, env->request_id))
		return mmn__resub_answer(c, env->request_id, err, sr, mr);
	if (env->request_id == c->abandoned_req) {
		if (sr)
			mmn__sub_send_unsubscribe(c, sr->sub_id);
		if (mr)
			undo_many(c, mr);
	}
	if (env->body_case == MMN__V1__ENVELOPE__BODY_ERROR && !env->request_id) {
		mmn__log(LOG_WARNING, "mmn: mmnd reported an error: %s (%s)", mmn_strerror(err),
			 env->error->message ? env->error->message : "");
		return err ? err : -EPROTO;
	}
	return 0;
}

/* An Invalidate (a record of an EventBatch, or a v1 message made into one). */
static int handle_invalidate(struct mmn_client *c, const struct mmn_event_record *m)
{
	struct mmn_sub *s = mmn__sub_by_id(c, m->sub_id);
	struct mmn_range r = {0};
	uint32_t ord;

	if (m->start >= m->end || m->event > MMN_EVENT_RESYNC)
		return -EPROTO;
	/* Every Invalidate of the event counts, delivered or not (AckMany.runs). */
	if (m->event_id != c->rx_event) {
		c->rx_event = m->event_id;
		c->rx_ord = 0;
	}
	ord = c->rx_ord++;
	if (!s)
		return 0; /* removed meanwhile: Unsubscribe counts as the ack */
	r.start = m->start < s->start ? s->start : m->start;
	r.end = m->end > s->end ? s->end : m->end;
	if (r.start >= r.end)
		return -EPROTO;
	r.event = (enum mmn_event)m->event;
	r.blockable = m->flags & MMN_RECORD_BLOCKABLE;
	r.seq = m->seq;
	r.event_id = m->event_id;
	r.needs_ack = m->flags & MMN_RECORD_NEEDS_ACK;
	return mmn__enqueue_invalidate(c, s, &r, ord);
}

static int handle_end(struct mmn_client *c, uint64_t sub_id, uint64_t event_id, uint64_t seq)
{
	struct mmn_sub *s = mmn__sub_by_id(c, sub_id);
	struct mmn_range r = {0};

	if (!s)
		return 0;
	r.event_id = event_id;
	r.seq = seq;
	return mmn__enqueue(c, QEV_END, s, &r, 0);
}

static int handle_invalidate_v1(struct mmn_client *c, const Mmn__V1__Invalidate *m)
{
	struct mmn_event_record rec = {
		.sub_id = m->sub_id,
		.event_id = m->event_id,
		.start = m->start,
		.end = m->end,
		.seq = m->seq,
		.kind = MMN_RECORD_INVALIDATE,
		.event = (unsigned)m->event > UINT8_MAX ? UINT8_MAX : (uint8_t)m->event,
		.flags = (m->blockable ? MMN_RECORD_BLOCKABLE : 0) | (m->needs_ack ? MMN_RECORD_NEEDS_ACK : 0),
	};

	return handle_invalidate(c, &rec);
}

static int handle_record(struct mmn_client *c, const struct mmn_event_record *m)
{
	int r;

	if (m->reserved || (m->flags & ~MMN_RECORD_FLAGS))
		return -EPROTO;
	switch (m->kind) {
	case MMN_RECORD_INVALIDATE:
		return handle_invalidate(c, m);
	case MMN_RECORD_END:
		return handle_end(c, m->sub_id, m->event_id, m->seq);
	case MMN_RECORD_INVALIDATE_END:
		r = handle_invalidate(c, m);
		return r < 0 ? r : handle_end(c, m->sub_id, m->event_id, m->end_seq);
	default:
		return -EPROTO;
	}
}

/*
 * v2: the records of one EventBatch, in order.  At most MMN_EVENT_BATCH_MAX,
 * each queueing at most two events: the room the dispatch path keeps
 * (mmn__queue_has_room()).  Copied out: the bytes need not be aligned.
 */
static int handle_event_batch(struct mmn_client *c, const Mmn__V1__EventBatch *b)
{
	size_t n = b->records.len / sizeof(struct mmn_event_record);

	if (c->version < 2 || !n || n > MMN_EVENT_BATCH_MAX || b->records.len % sizeof(struct mmn_event_record))
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		struct mmn_event_record rec;
		int r;

		memcpy(&rec, b->records.data + i * sizeof(rec), sizeof(rec));
		r = handle_record(c, &rec);
		if (r < 0)
			return r;
	}
	return 0;
}

static int handle_release(struct mmn_client *c, uint64_t sub_id, int reason)
{
	struct mmn_sub *s = mmn__sub_by_id(c, sub_id);

	if (!s)
		return 0;
	s->state = HANDLE_DEAD;
	mmn__seq_kill(s);
	return mmn__enqueue(c, QEV_RELEASE, s, NULL, reason);
}

/*
 * A HelloReply is accepted only as the answer to our Hello, with exactly one
 * descriptor, its memfd, or two when it says waiter_flag (the waiter page
 * follows); taken from @fds then (the caller closes the rest, and everything
 * of a rejected packet).
 */
static int hello_reply_packet(struct mmn_client *c, const MmnEnvelope *env, int *fds, size_t nfds)
{
	const Mmn__V1__HelloReply *h = env->hello_reply;
	/* The sequence page, the waiter page, the ack ring and its doorbell; -1: not sent. */
	int take[4] = {-1, -1, -1, -1};
	size_t want = 1 + h->waiter_flag + 2 * h->ack_ring, k = 0;

	if (c->state != CONN_HELLO || env->request_id != c->hello_req || nfds != want)
		return -EPROTO;
	take[0] = fds[k++];
	if (h->waiter_flag)
		take[1] = fds[k++];
	if (h->ack_ring) {
		take[2] = fds[k++];
		take[3] = fds[k++];
	}
	for (k = 0; k < nfds; k++)
		fds[k] = -1; /* ours now */
	return handle_hello_reply(c, h, take);
}

static int session_packet(struct mmn_client *c, const MmnEnvelope *env, int *fds, size_t nfds)
{
	switch (env->body_case) {
	case MMN__V1__ENVELOPE__BODY_HELLO_REPLY:
		return hello_reply_packet(c, env, fds, nfds);
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY:
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY:
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY_REPLY:
	case MMN__V1__ENVELOPE__BODY_STATUS:
	case MMN__V1__ENVELOPE__BODY_ERROR:
		return handle_reply(c, env);
	default:
		break;
	}
	if (c->state == CONN_HELLO)
		return -EPROTO;
	switch (env->body_case) {
	case MMN__V1__ENVELOPE__BODY_INVALIDATE:
		return handle_invalidate_v1(c, env->invalidate);
	case MMN__V1__ENVELOPE__BODY_INVALIDATE_END:
		return handle_end(c, env->invalidate_end->sub_id, env->invalidate_end->event_id,
				  env->invalidate_end->seq);
	case MMN__V1__ENVELOPE__BODY_EVENT_BATCH:
		return handle_event_batch(c, env->event_batch);
	case MMN__V1__ENVELOPE__BODY_RELEASE:
		return handle_release(c, env->release->sub_id, MMN_RELEASE_TARGET_GONE);
	case MMN__V1__ENVELOPE__BODY_REVOKED:
		return handle_release(c, env->revoked->sub_id,
				      env->revoked->reason ? (int)env->revoked->reason : MMN_RELEASE_ADMIN);
	default:
		return -EPROTO; /* a request body from the server */
	}
}

/*
 * The connection is gone.  Readers see a collision from now on; the pending
 * request fails; every delivered invalidation gets its end; the
 * subscriptions are resubscribed after reconnecting.
 */
static void session_lost(struct mmn_client *c, int err)
{
	mmn__seqpage_detach(c);
	if (c->req_id) {
		c->rep.err = err;
		c->req_done = true;
		mmn__eventfd_signal(c->replyfd);
	}
	/*
	 * No queue entry per sub (the queue must not grow here): mmn_dispatch()
	 * ends the delivered invalidations of every flagged sub once the events
	 * queued before the loss are delivered.
	 */
	mmn__resub_lost(c);
	for (struct mmn_sub *s = c->subs; s; s = s->next) {
		if (s->state == HANDLE_ACTIVE) {
			s->lost = true;
			c->lost_pending = true;
		}
	}
	if (c->lost_pending)
		mmn__eventfd_raise(c->wakefd, &c->wake_set);
}

const struct conn_ops mmn__session_ops = {
	.packet = session_packet,
	.lost = session_lost,
};

/*
 * Another thread dispatching meanwhile may read the reply: it stores it in
 * c->rep and signals c->replyfd, which this poll also watches.
 */
int mmn__session_wait_reply(struct mmn_client *c, uint64_t req_id)
{
	int64_t deadline = mmn__now_ms() + MMN_REQ_TIMEOUT_MS;
	int r = 0;

	while (!c->req_done) {
		struct pollfd p[2] = {{.fd = c->sock, .events = POLLIN},
				      {.fd = c->replyfd, .events = POLLIN}};
		int64_t left;

		while (!c->req_done && mmn__conn_read_packet(c) > 0)
			;
		if (c->req_done)
			break;
		left = deadline - mmn__now_ms();
		if (left <= 0 || c->state == CONN_DOWN) {
			r = c->state == CONN_DOWN ? -ECONNRESET : -ETIMEDOUT;
			c->abandoned_req = req_id;
			break;
		}
		pthread_mutex_unlock(&c->lock);
		poll(p, 2, (int)left);
		pthread_mutex_lock(&c->lock);
		mmn__eventfd_clear(c->replyfd);
	}
	c->req_id = 0;
	if (c->req_done) {
		c->req_done = false;
		r = c->rep.err;
	}
	return r;
}
