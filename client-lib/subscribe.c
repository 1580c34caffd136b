/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The subscription calls of the public API: mmn_subscribe (a request that
 * waits for its reply), mmn_unsubscribe (waits for a running callback of the
 * sub, then ends what was delivered), mmn_ack, mmn_sub_userdata.
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

/* A new, unlinked handle for the arguments of mmn_subscribe(), or NULL with *@err set. */
static struct mmn_sub *sub_new(struct mmn_client *c, pid_t pid, uint64_t start, uint64_t length,
			       const struct mmn_sub_opts *opts, int *err)
{
	struct mmn_sub *s = calloc(1, sizeof(*s));

	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = check_opts(opts, &s->opts);
	if (*err < 0) {
		free(s);
		return NULL;
	}
	s->c = c;
	s->pid = pid;
	s->start = start;
	s->end = start + length;
	s->epoch = 1; /* detached until mmnd gave a slot */
	return s;
}

/*
 * Send the Subscribe for @s and wait for its reply (c->req_lock and c->lock
 * held).  0 when the reply linked @s (pinned), else an errno and @s unseen.
 */
static int subscribe_locked(struct mmn_client *c, struct mmn_sub *s, pid_t pid)
{
	uint64_t req;
	int r;

	if (c->state != CONN_CONNECTED)
		return -ENOTCONN;
	if (c->needs_uffd) {
		if (pid != 0 && pid != getpid())
			return -EOPNOTSUPP;
		s->pid = 0;
		r = mmn__uffd_check_mapped(s->start, s->end);
		if (r < 0)
			return r;
	}
	mmn__sub_reserve(c, 1);
	req = c->req_id = ++c->next_req;
	c->req_done = false;
	c->req_sub = s;
	r = mmn__sub_send_subscribe(c, s, req, false);
	if (r >= 0)
		r = mmn__session_wait_reply(c, req);
	if (c->req_sub) {
		/* No (valid) reply: never linked, nobody else saw it. */
		c->req_sub = NULL;
		return r >= 0 ? -EPROTO : r;
	}
	return 0;
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
	if (!length)
		return -EINVAL;
	if (start + length < start || start + length > USER_VA_END)
		return -EOVERFLOW;
	s = sub_new(c, pid, start, length, opts, &r);
	if (!s)
		return r;

	pthread_mutex_lock(&c->req_lock);
	pthread_mutex_lock(&c->lock);
	r = subscribe_locked(c, s, pid);
	if (r == 0) {
		/*
		 * Linked by mmn__sub_link(): live, whatever happened since
		 * (its events may even have been delivered).  Drop the pin, unless
		 * a callback unsubscribed it already: a pinned tombstone is never
		 * trimmed (freed at disconnect), so the handle returned stays
		 * valid for -EALREADY.
		 */
		if (s->state != HANDLE_GONE)
			s->refs--;
		*out = s;
		s = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->req_lock);
	free(s);
	return r;
}

/* The client of the handle @s, for the calls that take a handle: 0, -EINVAL or -ECHILD. */
static int sub_client(struct mmn_sub *s, struct mmn_client **c)
{
	if (!s)
		return -EINVAL;
	*c = s->c;
	return mmn__forked(*c) ? -ECHILD : 0;
}

MMN_EXPORT int mmn_unsubscribe(struct mmn_sub *s)
{
	struct outstanding out[MMN_MAX_OUTSTANDING];
	struct mmn_client *c;
	unsigned nout;
	int r;

	r = sub_client(s, &c);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	if (s->state == HANDLE_GONE) {
		pthread_mutex_unlock(&c->lock);
		return -EALREADY;
	}
	/* A callback of @s on another thread finishes first. */
	while (c->cb_sub == s && !pthread_equal(c->disp_thread, pthread_self()))
		pthread_cond_wait(&c->cb_cond, &c->lock);
	if (s->state == HANDLE_GONE) {
		pthread_mutex_unlock(&c->lock);
		return -EALREADY;
	}
	if (s->state == HANDLE_ACTIVE && !s->resub_req && c->state != CONN_DOWN && c->state != CONN_HELLO)
		mmn__sub_send_unsubscribe(c, s->sub_id);
	s->state = HANDLE_GONE;
	s->lost = false; /* its ends run here */
	mmn__seq_kill(s);
	nout = s->nout;
	memcpy(out, s->out, sizeof(out[0]) * nout);
	s->nout = 0;
	mmn__sub_unlink(c, s);
	s->refs++; /* pinned while the ends run */
	pthread_mutex_unlock(&c->lock);

	for (unsigned i = 0; i < nout; i++)
		if (s->opts.invalidate_end)
			s->opts.invalidate_end(s, &out[i].r, s->opts.userdata);

	pthread_mutex_lock(&c->lock);
	mmn__sub_bury(c, s);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

MMN_EXPORT int mmn_ack(struct mmn_sub *s, uint64_t event_id)
{
	struct mmn_client *c;
	int r;

	r = sub_client(s, &c);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	if (s->state == HANDLE_GONE)
		r = -EALREADY;
	else if (s->state == HANDLE_DEAD)
		r = 0;
	else
		r = mmn__sub_send_ack(c, s, event_id);
	pthread_mutex_unlock(&c->lock);
	return r;
}
