/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side of a client connection: encoding and sending envelopes,
 * the queue for a full socket, coalescing of non-blocking events while it
 * overflows, and dropping a client (a failed send drops it).  Sending is
 * non-blocking; a full socket queues packets, and a queue at max_queued
 * coalesces the non-blocking events of that client into one whole-range
 * pair per subscription (sent once it drains).  A client whose queue grows
 * past four times the limit with messages that cannot be coalesced is
 * dropped (-ENOBUFS).  Loop thread only.
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

static int send_env(struct client *c, MmnEnvelope *env, uint64_t sub_id)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int len, r;

	if (!c || c->dropping || c->closed)
		return -ENOTCONN;
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

int mmn__client_send(struct client *c, MmnEnvelope *env)
{
	return send_env(c, env, 0);
}

/* Send @env of non-blocking sub @s, or coalesce it (returns 1) while the queue overflows. */
static int send_nb(struct client *c, struct sub *s, MmnEnvelope *env)
{
	struct broker *b = c->b;

	if (!c->coalescing && c->nqueued >= b->opt.max_queued) {
		c->coalescing = true;
		b->stats.queue_overflows++;
		if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
			mmn__log(LOG_WARNING, NULL,
				 "Client %" PRIu64 " (pid %d) is not reading; coalescing its events", c->id,
				 (int)c->pid);
	}
	if (c->coalescing) {
		s->resync = true;
		return 1;
	}
	return send_env(c, env, s->id);
}

int mmn__client_send_invalidate(struct client *c, struct sub *s, uint64_t sub_id, uint64_t event_id,
				uint64_t start, uint64_t end, uint32_t event, bool blockable, bool needs_ack,
				uint64_t seq, uint32_t deadline_ms, bool nonblocking)
{
	Mmn__V1__Invalidate inv = MMN__V1__INVALIDATE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	inv.sub_id = sub_id;
	inv.event_id = event_id;
	inv.start = start;
	inv.end = end;
	inv.event = (Mmn__V1__EventType)event;
	inv.blockable = blockable;
	inv.needs_ack = needs_ack;
	inv.seq = seq;
	inv.deadline_ms = deadline_ms;
	env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE;
	env.invalidate = &inv;
	if (nonblocking)
		return send_nb(c, s, &env);
	return mmn__client_send(c, &env);
}

int mmn__client_send_invalidate_end(struct client *c, uint64_t sub_id, uint64_t event_id, uint64_t seq)
{
	Mmn__V1__InvalidateEnd end = MMN__V1__INVALIDATE_END__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	end.sub_id = sub_id;
	end.event_id = event_id;
	end.seq = seq;
	env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
	env.invalidate_end = &end;
	return mmn__client_send(c, &env);
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
		Mmn__V1__Invalidate inv = MMN__V1__INVALIDATE__INIT;
		Mmn__V1__InvalidateEnd end = MMN__V1__INVALIDATE_END__INIT;
		MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

		if (!s->resync)
			continue;
		s->resync = false;
		inv.sub_id = s->id;
		inv.start = s->start;
		inv.end = s->end;
		inv.event = MMN__V1__EVENT_TYPE__EVENT_RESYNC;
		inv.seq = mmn__seqpage_value(c, s->slot);
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE;
		env.invalidate = &inv;
		send_env(c, &env, s->id);
		end.sub_id = s->id;
		end.seq = inv.seq;
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
		env.invalidate_end = &end;
		send_env(c, &env, s->id);
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
		mmn__log(LOG_NOTICE, NULL,
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
