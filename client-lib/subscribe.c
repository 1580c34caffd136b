/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The subscription calls of the public API: mmn_subscribe (a request that
 * waits for its reply), mmn_unsubscribe (waits for a running callback of the
 * sub, then ends what was delivered), mmn_ack, mmn_sub_userdata; their
 * steps are shared with the batch calls (batch.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "fork.h"
#include "mmn/mmn.h"
#include "seq.h"
#include "session.h"
#include "sub.h"
#include "subscribe.h"
#include "uffd.h"

#define EVENT_ALL ((1ull << (MMN_EVENT_RESYNC + 1)) - 1)

/* Highest user address on any Linux target (x86-64 with 5-level paging). */
#define USER_VA_END (1ull << 56)

MMN_EXPORT void *mmn_sub_userdata(struct mmn_sub *s)
{
	return s ? s->opts.userdata : NULL;
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

struct mmn_sub *mmn__subscribe_new(struct mmn_client *c, pid_t pid, uint64_t start, uint64_t length,
				   const struct mmn_sub_opts *opts, int *err)
{
	struct mmn_sub *s;

	*err = -EINVAL;
	if (pid < 0 || !length)
		return NULL;
	*err = -EOVERFLOW;
	if (start + length < start || start + length > USER_VA_END)
		return NULL;
	s = mmn__sub_alloc();
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = check_opts(opts, &s->opts);
	if (*err < 0) {
		mmn__sub_free(s);
		return NULL;
	}
	s->c = c;
	s->pid = pid;
	s->start = start;
	s->end = start + length;
	mmn__seq_init(s);
	return s;
}

int mmn__subscribe_check(struct mmn_client *c, struct mmn_sub *s)
{
	if (c->state != CONN_CONNECTED)
		return -ENOTCONN;
	if (c->needs_uffd) {
		if (s->pid != 0 && s->pid != getpid())
			return -EOPNOTSUPP;
		s->pid = 0;
		return mmn__uffd_check_mapped(s->start, s->end);
	}
	return 0;
}

int mmn__subscribe_locked(struct mmn_client *c, struct mmn_sub *s)
{
	uint64_t req;
	int r;

	r = mmn__subscribe_check(c, s);
	if (r < 0)
		return r;
	mmn__sub_reserve(c, 1);
	req = c->req_id = ++c->next_req;
	c->req_done = false;
	c->req_sub = s;
	r = mmn__sub_send_subscribe(c, s, req, false);
	if (r >= 0)
		r = mmn__session_wait_reply(c, req);
	c->req_id = 0;
	if (c->req_sub) {
		/* No (valid) reply: never linked, nobody else saw it. */
		c->req_sub = NULL;
		return r >= 0 ? -EPROTO : r;
	}
	return 0;
}

void mmn__subscribe_hand_out(struct mmn_sub *s)
{
	/*
	 * Linked by mmn__sub_link(): live, whatever happened since (its events
	 * may even have been delivered).  Drop the pin, unless a callback
	 * unsubscribed it already: a pinned tombstone is never trimmed (freed at
	 * disconnect), so the handle returned stays valid for -EALREADY.
	 */
	if (s->state != HANDLE_GONE)
		s->refs--;
}

MMN_EXPORT int mmn_subscribe(struct mmn_client *c, pid_t pid, uint64_t start, uint64_t length,
			     const struct mmn_sub_opts *opts, struct mmn_sub **out)
{
	struct mmn_sub *s;
	int r;

	if (out)
		*out = NULL;
	if (!c || !out || pid < 0)
		return -EINVAL;
	if (mmn__forked(c))
		return -ECHILD;
	s = mmn__subscribe_new(c, pid, start, length, opts, &r);
	if (!s)
		return r;

	pthread_mutex_lock(&c->req_lock);
	pthread_mutex_lock(&c->lock);
	r = mmn__subscribe_locked(c, s);
	if (r == 0) {
		mmn__subscribe_hand_out(s);
		*out = s;
		s = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->req_lock);
	mmn__sub_free(s);
	return r;
}

int mmn__sub_client(struct mmn_sub *s, struct mmn_client **c)
{
	if (!s)
		return -EINVAL;
	*c = s->c;
	return mmn__forked(*c) ? -ECHILD : 0;
}

int mmn__unsubscribe_begin(struct mmn_client *c, struct mmn_sub *s, bool *tell)
{
	if (s->state == HANDLE_GONE)
		return -EALREADY;
	/* A callback of @s on another thread finishes first. */
	while (c->cb_sub == s && !pthread_equal(c->disp_thread, pthread_self()))
		pthread_cond_wait(&c->cb_cond, &c->lock);
	if (s->state == HANDLE_GONE)
		return -EALREADY;
	*tell = s->state == HANDLE_ACTIVE && !s->resub_req && c->state != CONN_DOWN && c->state != CONN_HELLO;
	s->state = HANDLE_GONE;
	s->lost = false; /* its ends run in mmn__unsubscribe_finish() */
	mmn__seq_kill(s);
	mmn__sub_unlink(c, s);
	s->refs++; /* pinned while the ends run */
	return 0;
}

void mmn__unsubscribe_finish(struct mmn_client *c, struct mmn_sub *s)
{
	struct outstanding out[MMN_MAX_OUTSTANDING];
	unsigned nout = s->nout;

	memcpy(out, s->out, sizeof(out[0]) * nout);
	s->nout = 0;
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < nout; i++) {
		struct mmn_range r = mmn__out_range(&out[i]);

		if (s->opts.invalidate_end)
			s->opts.invalidate_end(s, &r, s->opts.userdata);
	}
	pthread_mutex_lock(&c->lock);
	mmn__sub_bury(c, s);
}

MMN_EXPORT int mmn_unsubscribe(struct mmn_sub *s)
{
	struct mmn_client *c;
	bool tell;
	int r;

	r = mmn__sub_client(s, &c);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	r = mmn__unsubscribe_begin(c, s, &tell);
	if (r == 0) {
		if (tell)
			mmn__sub_send_unsubscribe(c, s->sub_id);
		mmn__unsubscribe_finish(c, s);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

MMN_EXPORT int mmn_ack(struct mmn_sub *s, uint64_t event_id)
{
	struct mmn_client *c;
	int r;

	r = mmn__sub_client(s, &c);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	if (s->state == HANDLE_GONE)
		r = -EALREADY;
	else if (s->state == HANDLE_DEAD)
		r = 0;
	else
		r = mmn__sub_send_ack(c, s, event_id, false);
	pthread_mutex_unlock(&c->lock);
	return r;
}
