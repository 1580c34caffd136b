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

int mmn__client_send_nb(struct client *c, struct sub *s, MmnEnvelope *env)
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
