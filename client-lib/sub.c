/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Subscriptions: mmn_subscribe/unsubscribe/ack, and mmn_dispatch, which
 * delivers queued events to the callbacks.  Callbacks run with no lock held;
 * c->cb_sub names the sub whose callback runs, so mmn_unsubscribe() on
 * another thread waits for it (no callback after unsubscribe returns).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#define EVENT_ALL ((1ull << (MMN_EVENT_RESYNC + 1)) - 1)

/* Highest user address on any Linux target (x86-64 with 5-level paging). */
#define USER_VA_END (1ull << 56)

MMN_EXPORT void *mmn_sub_userdata(struct mmn_sub *s)
{
	return s ? s->opts.userdata : NULL;
}

int mmn__send_subscribe(struct mmn_client *c, const struct mmn_sub *s, uint64_t req_id, bool resubscribe)
{
	Mmn__V1__Subscribe m = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	m.pid = s->pid;
	m.start = s->start;
	m.length = s->end - s->start;
	m.flags = s->opts.flags;
	m.event_mask = s->opts.event_mask;
	m.ack_timeout_ms = s->opts.ack_timeout_ms;
	m.resubscribe = resubscribe;
	env.request_id = req_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &m;
	return mmn__send(c, &env, NULL, 0);
}

/* @publish: make the slot visible to readers now (else at the RESYNC end). */
void mmn__sub_attach(struct mmn_sub *s, uint64_t sub_id, uint32_t slot, uint32_t gen, bool publish)
{
	s->sub_id = sub_id;
	__atomic_store_n(&s->slot, mmn__seqpage_slot(s->c, slot), __ATOMIC_RELAXED);
	__atomic_store_n(&s->gen, gen, __ATOMIC_RELAXED);
	if (publish)
		mmn__seq_publish(s);
}

static void link_sub(struct mmn_sub **head, struct mmn_sub *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

/*
 * The SubscribeReply to mmn_subscribe()'s request, c->req_sub, arrived (c->lock
 * held, on whichever thread read it).  Link and attach the sub now, before
 * the next packet is handled: it may be an Invalidate for it already, and an
 * Invalidate for an unknown sub is dropped unacked.  The sub is pinned until
 * mmn_subscribe() hands it out.  Returns 0 or what mmn_subscribe() reports.
 */
int mmn__sub_reply_link(struct mmn_client *c, const Mmn__V1__SubscribeReply *sr)
{
	struct mmn_sub *s = c->req_sub;

	if (!mmn__seqpage_slot(c, sr->seq_slot)) {
		mmn__send_unsubscribe(c, sr->sub_id);
		return -EPROTO;
	}
	c->req_sub = NULL;
	s->state = SUB_ACTIVE;
	s->refs++;
	link_sub(&c->subs, s);
	mmn__sub_attach(s, sr->sub_id, sr->seq_slot, sr->seq_gen, true);
	return 0;
}

static void unlink_sub(struct mmn_sub **head, struct mmn_sub *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

/* Keep at most MMN_TOMBSTONES removed handles (newest at c->tombs); free the oldest unpinned. */
static void tomb_trim(struct mmn_client *c)
{
	struct mmn_sub *s = c->tombs_tail;

	while (s && c->ntombs > MMN_TOMBSTONES) {
		struct mmn_sub *prev = s->prev;

		if (!s->refs) {
			if (s->prev)
				s->prev->next = s->next;
			else
				c->tombs = s->next;
			if (s->next)
				s->next->prev = s->prev;
			else
				c->tombs_tail = s->prev;
			c->ntombs--;
			free(s);
		}
		s = prev;
	}
}

/* Drop a pin; c->lock held. */
void mmn__sub_put(struct mmn_sub *s)
{
	s->refs--;
	if (s->state == SUB_GONE && !s->refs)
		tomb_trim(s->c);
}

static int check_opts(const struct mmn_sub_opts *opts, struct mmn_sub_opts *copy)
{
	size_t need = offsetof(struct mmn_sub_opts, invalidate) + sizeof(opts->invalidate);

	if (!opts || opts->size < need)
		return -EINVAL;
	memset(copy, 0, sizeof(*copy));
	if (opts->size > sizeof(*copy)) {
		const unsigned char *p = (const unsigned char *)opts;

		for (size_t i = sizeof(*copy); i < opts->size; i++)
			if (p[i])
				return -E2BIG;
	}
	memcpy(copy, opts, opts->size < sizeof(*copy) ? opts->size : sizeof(*copy));
	copy->size = sizeof(*copy);
	if (copy->flags != MMN_SUB_BLOCKING && copy->flags != MMN_SUB_NONBLOCKING)
		return -EINVAL;
	if (copy->event_mask & ~EVENT_ALL)
		return -EINVAL;
	if (!copy->invalidate)
		return -EINVAL;
	return 0;
}

MMN_EXPORT int mmn_subscribe(struct mmn_client *c, pid_t pid, uint64_t start, uint64_t length,
			     const struct mmn_sub_opts *opts, struct mmn_sub **out)
{
	struct mmn_sub *s;
	uint64_t req;
	int r;

	if (out)
		*out = NULL;
	if (!c || !out || pid < 0)
		return -EINVAL;
	if (mmn__forked(c))
		return -ECHILD;
	if (!length)
		return -EINVAL;
	if (start + length < start || start + length > USER_VA_END)
		return -EOVERFLOW;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = check_opts(opts, &s->opts);
	if (r < 0) {
		free(s);
		return r;
	}
	s->c = c;
	s->pid = pid;
	s->start = start;
	s->end = start + length;
	s->epoch = 1; /* detached until mmnd gave a slot */

	pthread_mutex_lock(&c->req_lock);
	pthread_mutex_lock(&c->lock);
	if (c->state != CONN_CONNECTED) {
		r = -ENOTCONN;
		goto out;
	}
	if (c->needs_uffd) {
		if (pid != 0 && pid != getpid()) {
			r = -EOPNOTSUPP;
			goto out;
		}
		s->pid = 0;
		r = mmn__uffd_check_mapped(s->start, s->end);
		if (r < 0)
			goto out;
	}
	req = c->req_id = ++c->next_req;
	c->req_done = false;
	c->req_sub = s;
	r = mmn__send_subscribe(c, s, req, false);
	if (r >= 0)
		r = mmn__wait_reply(c, req);
	if (c->req_sub) {
		/* No (valid) reply: never linked, nobody else saw it. */
		c->req_sub = NULL;
		if (r >= 0)
			r = -EPROTO;
		goto out;
	}
	/*
	 * Linked by mmn__sub_reply_link(): live, whatever happened since (its
	 * events may even have been delivered).  Drop the pin, unless a callback
	 * unsubscribed it already: a pinned tombstone is never trimmed (freed at
	 * disconnect), so the handle returned stays valid for -EALREADY.
	 */
	if (s->state != SUB_GONE)
		s->refs--;
	*out = s;
	s = NULL;
	r = 0;
out:
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->req_lock);
	free(s);
	return r;
}

MMN_EXPORT int mmn_unsubscribe(struct mmn_sub *s)
{
	struct outstanding out[MMN_MAX_OUTSTANDING];
	struct mmn_client *c;
	unsigned nout;

	if (!s)
		return -EINVAL;
	c = s->c;
	if (mmn__forked(c))
		return -ECHILD;
	pthread_mutex_lock(&c->lock);
	if (s->state == SUB_GONE) {
		pthread_mutex_unlock(&c->lock);
		return -EALREADY;
	}
	/* A callback of @s on another thread finishes first. */
	while (c->cb_sub == s && !pthread_equal(c->disp_thread, pthread_self()))
		pthread_cond_wait(&c->cb_cond, &c->lock);
	if (s->state == SUB_GONE) {
		pthread_mutex_unlock(&c->lock);
		return -EALREADY;
	}
	if (s->state == SUB_ACTIVE && !s->resub_req && c->state != CONN_DOWN && c->state != CONN_HELLO)
		mmn__send_unsubscribe(c, s->sub_id);
	s->state = SUB_GONE;
	s->lost = false; /* its ends run here */
	mmn__seq_kill(s);
	nout = s->nout;
	memcpy(out, s->out, sizeof(out[0]) * nout);
	s->nout = 0;
	unlink_sub(&c->subs, s);
	s->refs++; /* pinned while the ends run */
	pthread_mutex_unlock(&c->lock);

	for (unsigned i = 0; i < nout; i++)
		if (s->opts.invalidate_end)
			s->opts.invalidate_end(s, &out[i].r, s->opts.userdata);

	pthread_mutex_lock(&c->lock);
	/* Oldest tombstones at the tail. */
	link_sub(&c->tombs, s);
	if (!c->tombs_tail)
		c->tombs_tail = s;
	c->ntombs++;
	mmn__sub_put(s);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int send_ack(struct mmn_client *c, struct mmn_sub *s, uint64_t event_id)
{
	Mmn__V1__Ack a = MMN__V1__ACK__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if (c->state == CONN_DOWN || c->state == CONN_HELLO || s->resub_req)
		return 0; /* that daemon is gone: nothing waits for this ack */
	a.sub_id = s->sub_id;
	a.event_id = event_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK;
	env.ack = &a;
	return mmn__send(c, &env, NULL, 0);
}

MMN_EXPORT int mmn_ack(struct mmn_sub *s, uint64_t event_id)
{
	struct mmn_client *c;
	int r;

	if (!s)
		return -EINVAL;
	c = s->c;
	if (mmn__forked(c))
		return -ECHILD;
	pthread_mutex_lock(&c->lock);
	if (s->state == SUB_GONE)
		r = -EALREADY;
	else if (s->state == SUB_DEAD)
		r = 0;
	else
		r = send_ack(c, s, event_id);
	pthread_mutex_unlock(&c->lock);
	return r;
}

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

static int deliver_invalidate(struct mmn_client *c, struct mmn_sub *s, struct mmn_range *r)
{
	uint64_t gen = c->conn_gen;
	int ret = 0;

	if (s->nout < MMN_MAX_OUTSTANDING) {
		s->out[s->nout].event_id = r->event_id;
		s->out[s->nout].r = *r;
		s->nout++;
	}
	CALLBACK(c, s, ret = s->opts.invalidate(s, r, s->opts.userdata));
	if (r->needs_ack && ret != MMN_ACK_LATER && s->state == SUB_ACTIVE && gen == c->conn_gen)
		send_ack(c, s, r->event_id);
	return 1;
}

static int deliver_end(struct mmn_client *c, struct mmn_sub *s, struct mmn_range *r)
{
	struct outstanding *o = find_out(s, r->event_id);
	struct mmn_range end;

	if (o) {
		end = o->r;
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

	while (s->nout && s->state != SUB_GONE) {
		struct mmn_range end = s->out[s->nout - 1].r;

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
 * End the delivered invalidations of every sub flagged by mmn__conn_lost().
 * Runs when the queue is empty, so after every event queued before the loss
 * and before the next connection's packets are read (RESYNC comes after).
 */
static int deliver_lost_subs(struct mmn_client *c)
{
	struct mmn_sub *s = c->subs;
	int n = 0;

	c->lost_pending = false;
	while (s) {
		int k;

		if (!s->lost) {
			s = s->next;
			continue;
		}
		s->lost = false;
		s->refs++; /* the callbacks run unlocked */
		k = deliver_lost(c, s);
		mmn__sub_put(s);
		n += k;
		/* After a callback the list may have changed: start over (flags are cleared). */
		s = k ? c->subs : s->next;
	}
	return n;
}

static int deliver_resync(struct mmn_client *c, struct qev *e)
{
	struct mmn_sub *s = e->s;
	int n = 1;

	e->r.event_id = 0;
	CALLBACK(c, s, s->opts.invalidate(s, &e->r, s->opts.userdata));
	if (s->state == SUB_GONE)
		return n;
	if (e->type == QEV_RESYNC_FAIL)
		return n + deliver_release(c, s, e->reason);
	if (s->state == SUB_ACTIVE && !s->resub_req)
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

	if (s->state == SUB_GONE)
		return 0;
	switch (e->type) {
	case QEV_INVALIDATE:
		return s->state == SUB_ACTIVE ? deliver_invalidate(c, s, &e->r) : 0;
	case QEV_END:
		return s->state == SUB_ACTIVE ? deliver_end(c, s, &e->r) : 0;
	case QEV_RELEASE:
		return deliver_release(c, s, e->reason);
	case QEV_RESYNC:
	case QEV_RESYNC_FAIL:
		return deliver_resync(c, e);
	}
	return 0;
}

MMN_EXPORT int mmn_dispatch(struct mmn_client *c)
{
	int budget = 64, n = 0, r;
	struct qev e;

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
	mmn__drain(c->wakefd);
	if (c->state == CONN_DOWN)
		mmn__conn_timer(c);
	while (budget-- > 0) {
		if (mmn__dequeue(c, &e)) {
			n += deliver(c, &e);
			mmn__sub_put(e.s);
			continue;
		}
		if (c->lost_pending) {
			n += deliver_lost_subs(c);
			continue;
		}
		if (mmn__pump(c, false) <= 0 && !c->qlen)
			break;
	}
	if (c->qlen || c->lost_pending)
		mmn__kick(c->wakefd);
	r = c->pending_error;
	c->pending_error = 0;
	c->dispatching = false;
	pthread_mutex_unlock(&c->lock);
	return r ? r : n;
}

void mmn__free_subs(struct mmn_client *c)
{
	struct mmn_sub *lists[] = {c->subs, c->tombs};

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		struct mmn_sub *s = lists[i];

		while (s) {
			struct mmn_sub *next = s->next;

			free(s);
			s = next;
		}
	}
	c->subs = c->tombs = c->tombs_tail = NULL;
}
