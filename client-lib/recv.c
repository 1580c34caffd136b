/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading mmnd's packets (all under c->lock): decoding into the client's
 * pre-faulted arena (no malloc on the dispatch path), answering the pending
 * request, and queueing events for delivery on the dispatching thread.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* protobuf-c allocator over c->arena: a bump allocator reset after every packet. */
static void *arena_alloc(void *data, size_t size)
{
	struct mmn_client *c = data;
	size_t at = (c->arena_used + 15) & ~(size_t)15;

	if (size > sizeof(c->arena) || at > sizeof(c->arena) - size)
		return NULL;
	c->arena_used = at + size;
	return c->arena + at;
}

static void arena_free(void *data, void *ptr)
{
}

void mmn__kick(int efd)
{
	uint64_t one = 1;

	if (efd >= 0 && write(efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, the fd is readable anyway. */
	}
}

void mmn__drain(int efd)
{
	uint64_t n;

	if (efd >= 0 && read(efd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing pending. */
	}
}

/* Ring growth: only on threads that may allocate (see the header). */
int mmn__queue_grow(struct mmn_client *c)
{
	size_t cap = c->qcap ? c->qcap * 2 : 256;
	size_t len = (cap * sizeof(struct qev) + 4095) & ~(size_t)4095;
	struct qev *q;

	q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (q == MAP_FAILED)
		return -ENOMEM;
	mlock(q, len);
	for (size_t i = 0; i < c->qlen; i++)
		q[i] = c->q[(c->qhead + i) % c->qcap];
	if (c->q)
		munmap(c->q, c->qmap_len);
	c->q = q;
	c->qcap = len / sizeof(struct qev);
	c->qmap_len = len;
	c->qhead = 0;
	return 0;
}

int mmn__enqueue(struct mmn_client *c, enum qev_type type, struct mmn_sub *s, const struct mmn_range *r,
		 int reason)
{
	struct qev *e;

	if (c->qlen == c->qcap && mmn__queue_grow(c) < 0) {
		mmn__log(LOG_ERR, "mmn: event queue full, dropping the connection");
		return -ENOMEM;
	}
	e = &c->q[(c->qhead + c->qlen) % c->qcap];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->s = s;
	e->reason = reason;
	if (r)
		e->r = *r;
	s->refs++;
	c->qlen++;
	mmn__kick(c->wakefd);
	return 0;
}

bool mmn__dequeue(struct mmn_client *c, struct qev *out)
{
	if (!c->qlen)
		return false;
	*out = c->q[c->qhead];
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
	return true;
}

struct mmn_sub *mmn__sub_by_id(struct mmn_client *c, uint64_t sub_id)
{
	for (struct mmn_sub *s = c->subs; s; s = s->next)
		if (s->state == SUB_ACTIVE && !s->resub_req && s->sub_id == sub_id)
			return s;
	return NULL;
}

void mmn__send_unsubscribe(struct mmn_client *c, uint64_t sub_id)
{
	Mmn__V1__Unsubscribe u = MMN__V1__UNSUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	u.sub_id = sub_id;
	env.request_id = ++c->next_req; /* its Status is ignored */
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE;
	env.unsubscribe = &u;
	mmn__send(c, &env, NULL, 0);
}

static struct mmn_sub *resub_by_req(struct mmn_client *c, uint64_t req)
{
	for (struct mmn_sub *s = c->subs; s; s = s->next)
		if (s->resub_req == req)
			return s;
	return NULL;
}

/* Reply to a re-Subscribe after reconnecting: RESYNC, then normal life. */
static void resub_done(struct mmn_client *c, struct mmn_sub *s, int err, const Mmn__V1__SubscribeReply *rep)
{
	const struct mmn_range r = {.start = s->start, .end = s->end, .event = MMN_EVENT_RESYNC};
	bool last;

	s->resub_req = 0;
	if (!err && !mmn__seqpage_slot(c, rep->seq_slot))
		err = -EPROTO;
	if (err) {
		s->state = SUB_DEAD;
		mmn__seq_kill(s);
		mmn__enqueue(c, QEV_RESYNC_FAIL, s, &r, err);
	} else {
		mmn__sub_attach(s, rep->sub_id, rep->seq_slot, rep->seq_gen, false);
		mmn__enqueue(c, QEV_RESYNC, s, &r, 0);
	}
	last = true;
	for (struct mmn_sub *o = c->subs; o; o = o->next)
		if (o->resub_req)
			last = false;
	if (last && c->state == CONN_RESUB)
		mmn__set_connected(c);
}

/* SubscribeReply, Status or Error naming a request. */
static int handle_reply(struct mmn_client *c, const MmnEnvelope *env)
{
	const Mmn__V1__SubscribeReply *sr = NULL;
	struct mmn_sub *s;
	int err = 0;

	if (env->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY)
		sr = env->subscribe_reply;
	else if (env->body_case == MMN__V1__ENVELOPE__BODY_STATUS)
		err = env->status->error;
	else
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
		c->rep.err = err;
		if (sr) {
			c->rep.sub_id = sr->sub_id;
			c->rep.slot = sr->seq_slot;
			c->rep.gen = sr->seq_gen;
			c->rep.ack_timeout_ms = sr->ack_timeout_ms;
			/* Before the next packet, which may be an Invalidate for it. */
			if (c->req_sub)
				c->rep.err = mmn__sub_reply_link(c, sr);
		} else if (!err) {
			c->rep.err = -EPROTO;
		}
		c->req_id = 0; /* answered: a connection loss from now on must not overwrite c->rep */
		c->req_done = true;
		mmn__kick(c->replyfd);
		return 0;
	}
	s = env->request_id ? resub_by_req(c, env->request_id) : NULL;
	if (s) {
		if (s->state == SUB_GONE) {
			/* Removed while the re-Subscribe was in flight. */
			s->resub_req = 0;
			if (sr)
				mmn__send_unsubscribe(c, sr->sub_id);
			return 0;
		}
		if (!sr && !err)
			err = -EPROTO;
		resub_done(c, s, err, sr);
		return 0;
	}
	if (sr && env->request_id == c->abandoned_req)
		mmn__send_unsubscribe(c, sr->sub_id);
	if (env->body_case == MMN__V1__ENVELOPE__BODY_ERROR && !env->request_id) {
		mmn__log(LOG_WARNING, "mmn: mmnd reported an error: %s (%s)", mmn_strerror(err),
			 env->error->message ? env->error->message : "");
		return err ? err : -EPROTO;
	}
	return 0;
}

static int handle_invalidate(struct mmn_client *c, const Mmn__V1__Invalidate *m)
{
	struct mmn_sub *s = mmn__sub_by_id(c, m->sub_id);
	struct mmn_range r = {0};

	if (m->start >= m->end || (unsigned)m->event > MMN_EVENT_RESYNC)
		return -EPROTO;
	if (!s)
		return 0; /* removed meanwhile: Unsubscribe counts as the ack */
	r.start = m->start < s->start ? s->start : m->start;
	r.end = m->end > s->end ? s->end : m->end;
	if (r.start >= r.end)
		return -EPROTO;
	r.event = (enum mmn_event)m->event;
	r.blockable = m->blockable;
	r.seq = m->seq;
	r.event_id = m->event_id;
	r.needs_ack = m->needs_ack;
	return mmn__enqueue(c, QEV_INVALIDATE, s, &r, 0);
}

static int handle_end(struct mmn_client *c, const Mmn__V1__InvalidateEnd *m)
{
	struct mmn_sub *s = mmn__sub_by_id(c, m->sub_id);
	struct mmn_range r = {0};

	if (!s)
		return 0;
	r.event_id = m->event_id;
	r.seq = m->seq;
	return mmn__enqueue(c, QEV_END, s, &r, 0);
}

static int handle_release(struct mmn_client *c, uint64_t sub_id, int reason)
{
	struct mmn_sub *s = mmn__sub_by_id(c, sub_id);

	if (!s)
		return 0;
	s->state = SUB_DEAD;
	mmn__seq_kill(s);
	return mmn__enqueue(c, QEV_RELEASE, s, NULL, reason);
}

static int handle(struct mmn_client *c, const MmnEnvelope *env, int *fds, size_t nfds)
{
	switch (env->body_case) {
	case MMN__V1__ENVELOPE__BODY_HELLO_REPLY:
		if (c->state != CONN_HELLO || env->request_id != c->hello_req || nfds != 1)
			return -EPROTO;
		return mmn__handle_hello_reply(c, env, fds[0]);
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY:
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
		return handle_invalidate(c, env->invalidate);
	case MMN__V1__ENVELOPE__BODY_INVALIDATE_END:
		return handle_end(c, env->invalidate_end);
	case MMN__V1__ENVELOPE__BODY_RELEASE:
		return handle_release(c, env->release->sub_id, MMN_RELEASE_TARGET_GONE);
	case MMN__V1__ENVELOPE__BODY_REVOKED:
		return handle_release(c, env->revoked->sub_id,
				      env->revoked->reason ? (int)env->revoked->reason : MMN_RELEASE_ADMIN);
	default:
		return -EPROTO; /* a request body from the server */
	}
}

static bool body_known(const MmnEnvelope *env)
{
	return env->body_case >= MMN__V1__ENVELOPE__BODY_HELLO &&
	       env->body_case <= MMN__V1__ENVELOPE__BODY_ERROR;
}

/*
 * Read and handle one packet.  Returns 1 when one was handled, 0 when
 * nothing is queued (or, unless @may_grow, the queue must drain first:
 * the dispatch path never allocates), < 0 when the
 * connection was dropped because of it (mmn__conn_lost() already ran).
 */
int mmn__pump(struct mmn_client *c, bool may_grow)
{
	ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = c};
	int fds[MMN_WIRE_MAX_FDS];
	size_t nfds = 0;
	MmnEnvelope *env;
	ssize_t n;
	int r;

	if (c->sock < 0 || c->state == CONN_DOWN)
		return 0;
	/* Never grow the queue on the dispatch path: deliver first. */
	if (!may_grow && c->qlen + 4 > c->qcap)
		return 0;
	n = mmn__wire_recv(c->sock, c->rbuf, sizeof(c->rbuf), fds, MMN_WIRE_MAX_FDS, &nfds);
	if (n < 0 && n != -EAGAIN && n != -EINTR && c->state == CONN_HELLO) {
		/*
		 * A socket error (ECONNRESET: mmnd closed with our Hello unread)
		 * is reported, once, before the packets still queued, such as
		 * the Error mmnd refused us with: read that, it says why.
		 */
		ssize_t again =
			mmn__wire_recv(c->sock, c->rbuf, sizeof(c->rbuf), fds, MMN_WIRE_MAX_FDS, &nfds);

		if (again > 0)
			n = again;
	}
	if (n == -EAGAIN || n == -EINTR)
		return 0;
	if (n <= 0) {
		r = n == 0 ? -ECONNRESET : (int)n;
		goto lost;
	}
	c->arena_used = 0;
	env = mmn__v1__envelope__unpack(&alloc, (size_t)n, c->rbuf);
	if (!env) {
		r = -EBADMSG;
	} else if (!body_known(env)) {
		r = -EPROTO;
	} else {
		r = handle(c, env, fds, nfds);
		if (env->body_case == MMN__V1__ENVELOPE__BODY_HELLO_REPLY)
			nfds = 0; /* the memfd was consumed */
	}
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	if (r >= 0)
		return 1;
lost:
	mmn__log(LOG_WARNING, "mmn: dropping the connection: %s", mmn_strerror(r));
	mmn__conn_lost(c, r);
	return r;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Wait (c->lock held, released while polling) for the reply to @req_id.
 * Another thread dispatching meanwhile may read it: it stores it in c->rep
 * and kicks c->replyfd, which this poll also watches.
 */
int mmn__wait_reply(struct mmn_client *c, uint64_t req_id)
{
	int64_t deadline = now_ms() + MMN_REQ_TIMEOUT_MS;
	int r = 0;

	while (!c->req_done) {
		struct pollfd p[2] = {{.fd = c->sock, .events = POLLIN},
				      {.fd = c->replyfd, .events = POLLIN}};
		int64_t left;

		while (!c->req_done && mmn__pump(c, true) > 0)
			;
		if (c->req_done)
			break;
		left = deadline - now_ms();
		if (left <= 0 || c->state == CONN_DOWN) {
			r = c->state == CONN_DOWN ? -ECONNRESET : -ETIMEDOUT;
			c->abandoned_req = req_id;
			break;
		}
		pthread_mutex_unlock(&c->lock);
		poll(p, 2, (int)left);
		pthread_mutex_lock(&c->lock);
		mmn__drain(c->replyfd);
	}
	c->req_id = 0;
	if (c->req_done) {
		c->req_done = false;
		r = c->rep.err;
	}
	return r;
}
