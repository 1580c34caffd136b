/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The v1 conversation (proto/mmn.proto): what each client message does.
 *
 * Protocol violations (anything before Hello but Hello, a second Hello, a
 * message only mmnd sends, a version without overlap) get Error and the
 * client is dropped.  Semantic errors (bad Subscribe arguments, an Ack or
 * Unsubscribe naming something unknown) get Error and the client stays.
 */

#include "clients/rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker-internal.h"
#include "clients/ackring.h"
#include "clients/client.h"
#include "clients/policy.h"
#include "clients/send.h"
#include "engine/seqpage-slots.h"
#include "clients/share.h"
#include "engine/fanout.h"
#include "engine/sub.h"
#include "engine/target.h"

/*
 * Send HelloReply @env with the descriptors it names: the sequence page,
 * the waiter page, and with @ring the ack ring and its doorbell (created
 * here; without them the client acks on its socket, as before).  The
 * client has its own descriptors then; our mappings stay.  0 or -errno.
 */
static int hello_reply_send(struct client *c, MmnEnvelope *env, bool ring)
{
	Mmn__V1__HelloReply *rep = env->hello_reply;
	int fds[4] = {c->memfd, c->wait_memfd}, ringfds[2] = {-1, -1}, r;
	size_t nfds = rep->waiter_flag ? 2 : 1;

	rep->ack_ring = ring && mmn__ackring_create(c, ringfds) == 0;
	if (rep->ack_ring) {
		fds[nfds++] = ringfds[0];
		fds[nfds++] = ringfds[1];
	}
	r = mmn__wire_send(c->fd, env, fds, nfds, 1);
	close(c->memfd);
	c->memfd = -1;
	if (c->wait_memfd >= 0)
		close(c->wait_memfd);
	c->wait_memfd = -1;
	if (ringfds[0] >= 0)
		close(ringfds[0]);
	return r;
}

static void do_hello(struct client *c, uint64_t request_id, const Mmn__V1__Hello *h)
{
	struct broker *b = c->b;
	const struct source_caps *caps = &b->src->caps;
	Mmn__V1__HelloReply rep = MMN__V1__HELLO_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int r;

	if (c->hello) {
		mmn__client_protocol_error(c, request_id, -EPROTO, "duplicate Hello");
		return;
	}
	if (h->version_min > MMN_PROTO_VERSION || h->version_max < MMN_PROTO_VERSION_MIN ||
	    h->version_min > h->version_max) {
		mmn__client_protocol_error(c, request_id, -EPROTONOSUPPORT,
					   "mmnd speaks protocol versions 1 and 2 only");
		return;
	}
	if (b->draining) {
		mmn__client_send_error(c, request_id, -ESHUTDOWN, "mmnd is stopping");
		mmn__client_drop(c, -ESHUTDOWN);
		return;
	}
	snprintf(c->name, sizeof(c->name), "%s", h->client_name ? h->client_name : "");
	for (char *p = c->name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	r = mmn__seqpage_create(c, b->opt.max_subs, h->waiter_flag, h->gen_base);
	if (r == -EINVAL) {
		mmn__client_protocol_error(c, request_id, r, "Hello.gen_base above 2^32");
		return;
	}
	if (r < 0) {
		mmn__client_send_error(c, request_id, r, "cannot create the sequence page");
		mmn__client_drop(c, r);
		return;
	}
	/* The highest version both speak; c->version is set once the reply is sent. */
	rep.version = h->version_max < MMN_PROTO_VERSION ? h->version_max : MMN_PROTO_VERSION;
	rep.source = (char *)caps->name;
	rep.event_mask = caps->event_mask;
	rep.acks_hold_kernel = caps->acks_hold_kernel;
	rep.events_before_change = caps->events_before_change;
	rep.needs_uffd = caps->needs_uffd;
	rep.registers_uffd = caps->needs_uffd && b->src->ops->uffd_register;
	rep.max_message_size = MMN_WIRE_MAX_MSG;
	rep.max_batch = MMN_MAX_BATCH;
	rep.default_ack_timeout_ms = b->opt.ack_timeout_ms;
	rep.max_ack_timeout_ms = b->opt.ack_cap_ms;
	rep.seqpage_slots = c->nslots;
	rep.client_id = c->id;
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO_REPLY;
	env.hello_reply = &rep;
	rep.waiter_flag = c->waiters != NULL;
	rep.gens_from_base = true;
	rep.ack_runs = h->ack_runs && rep.version >= 2;
	c->ack_runs = rep.ack_runs;
	r = hello_reply_send(c, &env, h->ack_ring && rep.version >= 2);
	if (r < 0) {
		mmn__client_drop(c, r);
		return;
	}
	c->hello = true;
	c->version = rep.version;
	mmn__client_hello_done(c);
	if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log_fields(LOG_INFO, MMN_MSGID_CLIENT_ATTACH, &CLIENT_FIELDS(c),
			 "Client %" PRIu64 " (pid %d, uid %u, %s) attached", c->id, (int)c->pid,
			 (unsigned)c->uid, c->name[0] ? c->name : "unnamed");
	if (b->has_obs && b->obs.client_connected) {
		struct admin_client ac = {
			.id = c->id,
			.pid = c->pid,
			.uid = c->uid,
			.name = c->name,
			.mode = "idle",
		};

		b->obs.client_connected(b->obs.ud, &ac);
	}
}

static void reply_status(struct client *c, uint64_t request_id, int err)
{
	Mmn__V1__Status st = MMN__V1__STATUS__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	st.error = err;
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_STATUS;
	env.status = &st;
	mmn__client_send(c, &env);
}

static void do_attach_uffd(struct client *c, uint64_t request_id, int *fds, size_t nfds)
{
	struct broker *b = c->b;
	struct source_target st = {.pid = c->pid, .pidfd = c->pidfd, .conn = c->id};
	int r;

	if (!b->src->caps.needs_uffd || !b->src->ops->attach_uffd) {
		mmn__client_send_error(c, request_id, -EOPNOTSUPP, "this source does not use userfaultfd");
		return;
	}
	if (nfds != 1) {
		mmn__client_send_error(c, request_id, -EBADF, "AttachUffd carries exactly one descriptor");
		return;
	}
	if (b->source_lost) {
		mmn__client_send_error(c, request_id, -ENODEV, "the event source is gone");
		return;
	}
	if (c->uffd_attached) {
		mmn__client_send_error(c, request_id, -EALREADY, "a userfaultfd is attached already");
		return;
	}
	st.uffd = fds[0];
	r = b->src->ops->attach_uffd(b->src, &st, fds[0]);
	fds[0] = -1; /* the source owns it now, also on failure */
	if (r == 0)
		c->uffd_attached = true;
	reply_status(c, request_id, r);
}

/* v2: each pair is an Ack of its own (no reply, a late one is not an error). */
static void do_ack_many(struct client *c, uint64_t request_id, const Mmn__V1__AckMany *m)
{
	if (c->version < 2) {
		mmn__client_protocol_error(c, request_id, -EPROTO, "AckMany needs protocol version 2");
		return;
	}
	if (m->n_sub_ids != m->n_event_ids || !m->n_sub_ids || m->n_sub_ids > MMN_MAX_ACKS) {
		mmn__client_protocol_error(c, request_id, -EBADMSG, "AckMany: lists of different or bad length");
		return;
	}
	if (m->n_runs && !c->ack_runs) {
		mmn__client_protocol_error(c, request_id, -EPROTO, "AckMany.runs needs Hello.ack_runs");
		return;
	}
	if (m->n_runs && (m->n_runs != m->n_sub_ids || m->n_runs > MMN_MAX_ACK_RUNS)) {
		mmn__client_protocol_error(c, request_id, -EBADMSG, "AckMany: runs of bad length");
		return;
	}
	for (size_t i = 0; i < m->n_runs; i++) {
		if (!m->runs[i]) {
			mmn__client_protocol_error(c, request_id, -EBADMSG, "AckMany: a run of 0");
			return;
		}
	}
	for (size_t i = 0; i < m->n_sub_ids && !c->dropping; i++)
		mmn__fanout_ack_run(c, m->sub_ids[i], m->event_ids[i], m->n_runs ? m->runs[i] : 1);
}

static void do_share(struct client *c, uint64_t request_id, const Mmn__V1__Share *s)
{
	Mmn__V1__ShareReply rep = MMN__V1__SHARE_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	uint8_t token[16];
	int r;

	/*
	 * A token lets another process watch this one; a source that watches
	 * only each client's own memory (uffd: HelloReply says needs_uffd,
	 * which libmmn reports as MMN_CAP_SELF_ONLY) could never honour it.
	 */
	if (!c->b->src->caps.other_processes) {
		mmn__client_send_error(c, request_id, -EOPNOTSUPP,
				       "this source watches only each client's own memory: a share token "
				       "could never be used");
		return;
	}
	r = mmn__share_create(c, s, token);
	if (r < 0) {
		mmn__client_send_error(c, request_id, r, "cannot share this range");
		return;
	}
	rep.token.data = token;
	rep.token.len = sizeof(token);
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_SHARE_REPLY;
	env.share_reply = &rep;
	mmn__client_send(c, &env);
}

/*
 * Validate and authorise one Subscribe, @queued more of @c's already
 * counted against its limits (earlier items of the same batch).  0 with
 * *@r filled and a reference on *@t, or a negative errno and *@msg.
 */
static int subscribe_check(struct client *c, const Mmn__V1__Subscribe *req, uint32_t queued, struct sub_req *r,
			   struct target **t, const char **msg)
{
	struct broker *b = c->b;
	int err;

	*msg = NULL;
	if (b->draining)
		return *msg = "mmnd is stopping", -ESHUTDOWN;
	if (b->source_lost)
		return *msg = "the event source is gone", -ENODEV;
	if (b->src->caps.needs_uffd && !c->uffd_attached)
		return *msg = "send AttachUffd first", -ENOTCONN;
	err = mmn__policy_check_subscribe(b, req, r, msg);
	if (err < 0)
		return err;
	r->resubscribe = req->resubscribe;
	if (c->nsubs + c->npending + queued >= b->opt.max_subs || c->nsubs + c->npending + queued >= c->nslots)
		return *msg = "too many subscriptions", -ENOSPC;
	err = mmn__policy_uid_may_subscribe(c, queued, msg);
	if (err < 0)
		return err;
	if (r->pid != 0 && r->pid != c->pid && !b->src->caps.other_processes)
		return *msg = "this source watches only the client itself", -EOPNOTSUPP;
	err = mmn__target_get(b, c, r->pid, t);
	if (err < 0)
		return *msg = "no such target", err;
	if ((*t)->pid != c->pid) {
		err = mmn__policy_authorize(b, c, (*t)->pid, (*t)->pidfd, r, &req->share_token);
		if (err < 0) {
			mmn__target_put(*t);
			return *msg = "not allowed to watch this process", err;
		}
	}
	return 0;
}

/* Validate and authorise a Subscribe; the engine subscribes (mmn__sub_add). */
static int do_subscribe(struct client *c, uint64_t request_id, const Mmn__V1__Subscribe *req)
{
	struct sub_req r;
	struct target *t;
	const char *msg;
	int err = subscribe_check(c, req, 0, &r, &t, &msg);

	if (err < 0)
		return mmn__client_send_error(c, request_id, err, msg);
	mmn__sub_add(t, c, request_id, &r);
	return 0;
}

/* Each item as a Subscribe of its own; one reply for all (mmn__sub_add_many). */
static int do_subscribe_many(struct client *c, uint64_t request_id, const Mmn__V1__SubscribeMany *m)
{
	struct sub_batch_item *items;
	uint32_t n = (uint32_t)m->n_items, queued = 0;
	const char *msg;

	if (m->n_items > MMN_MAX_BATCH)
		return mmn__client_send_error(c, request_id, -E2BIG, "more items than HelloReply.max_batch");
	items = calloc(n ? n : 1, sizeof(*items));
	if (!items)
		return mmn__client_send_error(c, request_id, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		items[i].res.error = subscribe_check(c, m->items[i], queued, &items[i].r, &items[i].t, &msg);
		if (items[i].res.error < 0)
			items[i].t = NULL;
		else
			queued++;
	}
	mmn__sub_add_many(c, request_id, items, n);
	return 0;
}

/* Each item as an Unsubscribe of its own; one reply, once every item is gone. */
static int do_unsubscribe_many(struct client *c, uint64_t request_id, const Mmn__V1__UnsubscribeMany *m)
{
	struct unsub_wait *w;
	uint32_t n = (uint32_t)m->n_sub_ids;

	if (m->n_sub_ids > MMN_MAX_BATCH)
		return mmn__client_send_error(c, request_id, -E2BIG, "more items than HelloReply.max_batch");
	w = calloc(1, sizeof(*w) + n * sizeof(w->errors[0]));
	if (!w)
		return mmn__client_send_error(c, request_id, -ENOMEM, "out of memory");
	w->c = c;
	w->request_id = request_id;
	w->many = true;
	w->n = n;
	w->remaining = 1; /* ours, until every item was handled */
	for (uint32_t i = 0; i < n; i++) {
		int r = mmn__sub_remove(c, request_id, m->sub_ids[i], w);

		w->errors[i] = r < 0 ? r : 0;
	}
	if (--w->remaining == 0) {
		mmn__client_send_unsubscribed_many(c, request_id, w->errors, n);
		free(w);
	}
	return 0;
}

void mmn__rpc_dispatch(struct client *c, const MmnEnvelope *env, int *fds, size_t nfds)
{
	uint64_t rid = env->request_id;

	if (!c->hello && env->body_case != MMN__V1__ENVELOPE__BODY_HELLO) {
		mmn__client_protocol_error(c, rid, -EPROTO, "Hello first");
		return;
	}
	switch (env->body_case) {
	case MMN__V1__ENVELOPE__BODY_HELLO:
		do_hello(c, rid, env->hello);
		break;
	case MMN__V1__ENVELOPE__BODY_ATTACH_UFFD:
		do_attach_uffd(c, rid, fds, nfds);
		break;
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE:
		do_subscribe(c, rid, env->subscribe);
		break;
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE:
		mmn__sub_unsubscribe(c, rid, env->unsubscribe->sub_id);
		break;
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY:
		do_subscribe_many(c, rid, env->subscribe_many);
		break;
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY:
		do_unsubscribe_many(c, rid, env->unsubscribe_many);
		break;
	case MMN__V1__ENVELOPE__BODY_SHARE:
		do_share(c, rid, env->share);
		break;
	case MMN__V1__ENVELOPE__BODY_ACK:
		/*
		 * An Ack has no reply.  One that names no outstanding event is
		 * late, not wrong: the event ended meanwhile (the client was
		 * evicted at its deadline, stopped, or the event was ended by a
		 * later one), and mmn_ack() promises 0 then.  Answering with an
		 * Error would make the client drop its whole connection.
		 */
		mmn__fanout_ack(c, env->ack->sub_id, env->ack->event_id);
		break;
	case MMN__V1__ENVELOPE__BODY_ACK_MANY:
		do_ack_many(c, rid, env->ack_many);
		break;
	default:
		mmn__client_protocol_error(c, rid, -EPROTO, "message not accepted by mmnd");
		break;
	}
}
