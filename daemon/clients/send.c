/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side of a client connection: encoding and sending envelopes,
 * batching a v2 client's events, the queue for a full socket, coalescing of
 * non-blocking events while it overflows, and dropping a client (a failed
 * send drops it).  Sending is non-blocking; a full socket queues packets,
 * and a queue at max_queued coalesces the non-blocking events of that
 * client into one whole-range pair per subscription (sent once it drains).
 * A client whose queue grows past four times the limit with messages that
 * cannot be coalesced is dropped (-ENOBUFS).
 *
 * A v2 client's Invalidates and InvalidateEnds become records of one
 * EventBatch (proto/event-record.h), sent when full, before any other
 * message to that client (order is kept), or before the loop next polls
 * (broker.c batch_prepare_cb): a burst of events costs one packet per 56
 * records instead of one per message, and nothing waits for a timer.  An InvalidateEnd that follows its own Invalidate in the batch,
 * with no ack asked, is folded into that record.  Loop thread only.
 */
#include "clients/send.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "engine/seqpage-slots.h"
#include "engine/list.h"
#include "engine/sub.h"
#include "event-record.h"

void mmn__client_set_poll(struct client *c, int events)
{
	if (c->closed || c->dropping || events == c->poll_events)
		return;
	c->poll_events = events;
	/* the callback client.c started the handle with */
	uv_poll_start(&c->poll, events, c->poll.poll_cb);
}

static int send_raw(struct client *c, const uint8_t *buf, size_t len)
{
	ssize_t n;

	do
		n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int queue_packet(struct client *c, const uint8_t *buf, size_t len, uint64_t sub_id, uint32_t kind)
{
	struct outmsg *m;

	/* 64-bit: four times any uint32_t limit cannot wrap. */
	if ((uint64_t)c->nqueued >= 4 * (uint64_t)c->b->opt.max_queued) {
		mmn__client_drop(c, -ENOBUFS);
		return -ENOBUFS;
	}
	m = malloc(sizeof(*m) + len);
	if (!m) {
		mmn__client_drop(c, -ENOMEM);
		return -ENOMEM;
	}
	m->sub_id = sub_id;
	m->kind = kind;
	m->len = (uint32_t)len;
	memcpy(m->data, buf, len);
	list_add_tail(&c->outq, &m->link);
	c->nqueued++;
	mmn__client_set_poll(c, UV_READABLE | UV_WRITABLE | UV_DISCONNECT);
	return 0;
}

/* Encode and send (or queue) one packet. */
static int send_packet(struct client *c, MmnEnvelope *env, uint64_t sub_id)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int len, r;

	len = mmn__wire_encode(env, buf, sizeof(buf));
	if (len < 0)
		return len;
	if (list_empty(&c->outq)) {
		r = send_raw(c, buf, (size_t)len);
		if (r == 0)
			return 0;
		if (r != -EAGAIN && r != -ENOBUFS) {
			mmn__client_drop(c, r);
			return r;
		}
	}
	return queue_packet(c, buf, (size_t)len, sub_id, env->body_case);
}

/* Send @c's EventBatch records, if any, as one packet.  The batch is empty after. */
static int batch_send(struct client *c)
{
	Mmn__V1__EventBatch eb = MMN__V1__EVENT_BATCH__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	uint32_t n = c->nbatch;

	if (!n)
		return 0;
	c->batch_gen = c->b->batch_gen;
	c->nbatch = 0;
	c->nfoldable = 0;
	list_del(&c->blink);
	if (c->dropping || c->closed)
		return -ENOTCONN;
	eb.records.data = (uint8_t *)c->batch;
	eb.records.len = n * sizeof(*c->batch);
	env.body_case = MMN__V1__ENVELOPE__BODY_EVENT_BATCH;
	env.event_batch = &eb;
	return send_packet(c, &env, 0);
}

/* Every message goes out after the records batched before it. */
static int send_env(struct client *c, MmnEnvelope *env, uint64_t sub_id)
{
	if (!c || c->dropping || c->closed)
		return -ENOTCONN;
	if (c->nbatch) {
		int r = batch_send(c);

		if (r < 0)
			return r;
	}
	return send_packet(c, env, sub_id);
}

/*
 * The records @c's batch holds before it is sent: MMN_EVENT_BATCH_FIRST in
 * the first packet of a loop iteration, so that a client woken for a large
 * fan-out works while mmnd builds the rest (nobody waits on a partial
 * event: its acks are only complete once all its records are out); then
 * MMN_EVENT_BATCH_MAX, one system call for that many.
 */
static uint32_t batch_cap(struct client *c)
{
	return c->batch_gen == c->b->batch_gen ? MMN_EVENT_BATCH_MAX : MMN_EVENT_BATCH_FIRST;
}

/* Append @rec to @c's batch (sending a full one first).  0 or -errno. */
static int batch_add(struct client *c, const struct mmn_event_record *rec)
{
	if (c->dropping || c->closed)
		return -ENOTCONN;
	if (!c->batch) {
		c->batch = malloc(MMN_EVENT_BATCH_MAX * sizeof(*c->batch));
		if (!c->batch) {
			mmn__client_drop(c, -ENOMEM);
			return -ENOMEM;
		}
	}
	if (c->nbatch == batch_cap(c)) {
		int r = batch_send(c);

		if (r < 0)
			return r;
	}
	c->batch[c->nbatch++] = *rec;
	if (rec->kind == MMN_RECORD_INVALIDATE && !(rec->flags & MMN_RECORD_NEEDS_ACK))
		c->nfoldable++;
	if (!list_linked(&c->blink))
		list_add_tail(&c->b->batched, &c->blink);
	return 0;
}

void mmn__client_send_batches(struct broker *b)
{
	while (!list_empty(&b->batched))
		batch_send(list_entry(b->batched.next, struct client, blink));
	b->batch_gen++; /* the next packet of each client is a first again */
}

int mmn__client_send(struct client *c, MmnEnvelope *env)
{
	return send_env(c, env, 0);
}

/* True (and @s flagged for a whole-range pair) while @c's queue overflows. */
static bool coalesce(struct client *c, struct sub *s)
{
	struct broker *b = c->b;

	if (!c->coalescing && c->nqueued >= b->opt.max_queued) {
		c->coalescing = true;
		b->stats.queue_overflows++;
		if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
			mmn__log_fields(LOG_WARNING, MMN_MSGID_QUEUE_OVERFLOW, &CLIENT_FIELDS(c),
				 "Client %" PRIu64 " (pid %d) is not reading; coalescing its events", c->id,
				 (int)c->pid);
	}
	if (c->coalescing)
		s->resync = true;
	return c->coalescing;
}

/* v1: the one message @rec stands for (an INVALIDATE or an END record), as its own packet. */
static int send_record_v1(struct client *c, const struct mmn_event_record *rec, uint64_t queue_sub)
{
	Mmn__V1__Invalidate inv = MMN__V1__INVALIDATE__INIT;
	Mmn__V1__InvalidateEnd ie = MMN__V1__INVALIDATE_END__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if (rec->kind == MMN_RECORD_END) {
		ie.sub_id = rec->sub_id;
		ie.event_id = rec->event_id;
		ie.seq = rec->seq;
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
		env.invalidate_end = &ie;
		return send_env(c, &env, queue_sub);
	}
	inv.sub_id = rec->sub_id;
	inv.event_id = rec->event_id;
	inv.start = rec->start;
	inv.end = rec->end;
	inv.event = (Mmn__V1__EventType)rec->event;
	inv.blockable = rec->flags & MMN_RECORD_BLOCKABLE;
	inv.needs_ack = rec->flags & MMN_RECORD_NEEDS_ACK;
	inv.seq = rec->seq;
	inv.deadline_ms = rec->deadline_ms;
	env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE;
	env.invalidate = &inv;
	return send_env(c, &env, queue_sub);
}

/* One record for either version: batched for v2, its own packet for v1. */
int mmn__client_send_invalidate(struct client *c, struct sub *s, uint64_t sub_id, uint64_t event_id,
				uint64_t start, uint64_t end, uint32_t event, bool blockable, bool needs_ack,
				uint64_t seq, uint32_t deadline_ms, bool nonblocking)
{
	struct mmn_event_record rec = {
		.sub_id = sub_id,
		.event_id = event_id,
		.start = start,
		.end = end,
		.seq = seq,
		.deadline_ms = deadline_ms,
		.kind = MMN_RECORD_INVALIDATE,
		.event = (uint8_t)event,
		.flags = (blockable ? MMN_RECORD_BLOCKABLE : 0) | (needs_ack ? MMN_RECORD_NEEDS_ACK : 0),
	};

	if (nonblocking && coalesce(c, s))
		return 1;
	if (c->version >= 2)
		return batch_add(c, &rec);
	return send_record_v1(c, &rec, nonblocking ? s->id : 0);
}

/* How far back an InvalidateEnd looks for its Invalidate in the batch (bounded work per end). */
#define FOLD_LOOKBACK 16

/*
 * v2: fold the end into its own Invalidate, still in the batch and asking
 * no ack, when no later record is of the same sub: the sub's own order of
 * messages stays as it was, only other subs' records are overtaken.
 */
static int batch_end(struct client *c, const struct mmn_event_record *end)
{
	for (uint32_t i = c->nbatch, n = 0; i-- > 0 && n < FOLD_LOOKBACK && c->nfoldable && end->event_id;
	     n++) {
		struct mmn_event_record *r = &c->batch[i];

		if (r->sub_id != end->sub_id)
			continue;
		if (r->kind == MMN_RECORD_INVALIDATE && r->event_id == end->event_id &&
		    !(r->flags & MMN_RECORD_NEEDS_ACK)) {
			r->kind = MMN_RECORD_INVALIDATE_END;
			r->end_seq = end->seq;
			c->nfoldable--;
			return 0;
		}
		break;
	}
	return batch_add(c, end);
}

int mmn__client_send_invalidate_end(struct client *c, uint64_t sub_id, uint64_t event_id, uint64_t seq)
{
	struct mmn_event_record rec = {.sub_id = sub_id, .event_id = event_id, .seq = seq, .kind = MMN_RECORD_END};

	if (c->version >= 2 && !c->dropping && !c->closed)
		return batch_end(c, &rec);
	return send_record_v1(c, &rec, 0);
}

int mmn__client_send_status(struct client *c, uint64_t request_id, int err)
{
	Mmn__V1__Status st = MMN__V1__STATUS__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	st.error = err;
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_STATUS;
	env.status = &st;
	return mmn__client_send(c, &env);
}

/* The SubscribeReply of a created subscription (Subscribe and SubscribeMany alike). */
static void subscribe_reply_fill(Mmn__V1__SubscribeReply *rep, const struct sub_result *r)
{
	mmn__v1__subscribe_reply__init(rep);
	rep->sub_id = r->sub_id;
	rep->seq_slot = r->slot;
	rep->seq_gen = r->gen;
	rep->ack_timeout_ms = r->timeout_ms;
}

int mmn__client_send_subscribed(struct client *c, uint64_t request_id, const struct sub_result *res)
{
	Mmn__V1__SubscribeReply rep;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	subscribe_reply_fill(&rep, res);
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY;
	env.subscribe_reply = &rep;
	return mmn__client_send(c, &env);
}

int mmn__client_send_subscribed_many(struct client *c, uint64_t request_id, const struct sub_batch_item *items,
				     uint32_t n)
{
	Mmn__V1__SubscribeManyReply rep = MMN__V1__SUBSCRIBE_MANY_REPLY__INIT;
	Mmn__V1__SubscribeResult res[MMN_MAX_BATCH], *resp[MMN_MAX_BATCH];
	Mmn__V1__SubscribeReply ok[MMN_MAX_BATCH];
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if (n > MMN_MAX_BATCH)
		return -E2BIG; /* rpc.c refuses such a batch before it gets here */
	for (uint32_t i = 0; i < n; i++) {
		const struct sub_result *r = &items[i].res;

		mmn__v1__subscribe_result__init(&res[i]);
		resp[i] = &res[i];
		res[i].error = r->error;
		if (r->error)
			continue;
		subscribe_reply_fill(&ok[i], r);
		res[i].reply = &ok[i];
	}
	rep.n_results = n;
	rep.results = resp;
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY;
	env.subscribe_many_reply = &rep;
	return mmn__client_send(c, &env);
}

int mmn__client_send_unsubscribed_many(struct client *c, uint64_t request_id, const int32_t *errors, uint32_t n)
{
	Mmn__V1__UnsubscribeManyReply rep = MMN__V1__UNSUBSCRIBE_MANY_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	rep.n_errors = n;
	rep.errors = (int32_t *)errors;
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY_REPLY;
	env.unsubscribe_many_reply = &rep;
	return mmn__client_send(c, &env);
}

int mmn__client_send_release(struct client *c, uint64_t sub_id)
{
	Mmn__V1__Release rel = MMN__V1__RELEASE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	rel.sub_id = sub_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_RELEASE;
	env.release = &rel;
	return mmn__client_send(c, &env);
}

/* The queue drained: deliver one whole-range pair per coalesced sub. */
static void flush_resync(struct client *c)
{
	c->coalescing = false;
	list_for_each(pos, &c->subs)
	{
		struct sub *s = list_entry(pos, struct sub, clink);
		struct mmn_event_record rec = {
			.sub_id = s->id,
			.start = s->start,
			.end = s->end,
			.kind = MMN_RECORD_INVALIDATE,
			.event = MMN__V1__EVENT_TYPE__EVENT_RESYNC,
		};

		if (!s->resync)
			continue;
		s->resync = false;
		rec.seq = mmn__seqpage_value(c, s->slot);
		send_record_v1(c, &rec, s->id);
		rec.kind = MMN_RECORD_END;
		if (!s->no_end)
			send_record_v1(c, &rec, s->id);
	}
}

void mmn__client_flush(struct client *c)
{
	while (!list_empty(&c->outq)) {
		struct outmsg *m = list_entry(c->outq.next, struct outmsg, link);
		int r = send_raw(c, m->data, m->len);

		if (r == -EAGAIN || r == -ENOBUFS)
			return;
		if (r < 0) {
			mmn__client_drop(c, r);
			return;
		}
		list_del(&m->link);
		c->nqueued--;
		free(m);
	}
	mmn__client_set_poll(c, UV_READABLE | UV_DISCONNECT);
	if (c->coalescing)
		flush_resync(c);
}

int mmn__client_send_error(struct client *c, uint64_t request_id, int err, const char *msg)
{
	Mmn__V1__Error e = MMN__V1__ERROR__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	e.error = err;
	e.message = (char *)(msg ? msg : "");
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_ERROR;
	env.error = &e;
	mmn__client_send(c, &env);
	return err;
}

int mmn__client_send_revoked(struct client *c, uint64_t sub_id, uint32_t reason, uint64_t event_id)
{
	Mmn__V1__Revoked rev = MMN__V1__REVOKED__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	rev.sub_id = sub_id;
	rev.reason = reason;
	rev.event_id = event_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_REVOKED;
	env.revoked = &rev;
	return mmn__client_send(c, &env);
}

void mmn__client_protocol_error(struct client *c, uint64_t request_id, int err, const char *msg)
{
	struct broker *b = c->b;

	if (c->dropping)
		return;
	b->stats.protocol_errors++;
	if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log_fields(LOG_NOTICE, MMN_MSGID_PROTOCOL_ERROR, &CLIENT_FIELDS(c),
			 "Client %" PRIu64 " (pid %d) sent a bad message (%s): %s; dropping it", c->id,
			 (int)c->pid, strerror(-err), msg);
	mmn__client_send_error(c, request_id, err, msg);
	mmn__client_drop(c, err);
}

void mmn__client_drop(struct client *c, int error)
{
	if (c->dropping)
		return;
	c->dropping = true;
	c->drop_error = error;
	list_del(&c->hlink);
	if (!c->closed)
		uv_poll_stop(&c->poll);
	list_del(&c->link);
	list_add_tail(&c->b->reap, &c->link);
}
