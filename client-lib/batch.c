/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The batch calls of the public API: mmn_subscribe_many and
 * mmn_unsubscribe_many.  Each item is handled as mmn_subscribe() or
 * mmn_unsubscribe() would handle it (subscribe.h), but the requests go to
 * mmnd in batches, SubscribeMany and UnsubscribeMany, of at most
 * min(max_batch, MMN_BATCH_MAX) items and one packet each; an mmnd without
 * batches (max_batch 0) gets one request per item.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "client.h"
#include "conn.h"
#include "fork.h"
#include "memory.h"
#include "mmn/mmn.h"
#include "queue.h"
#include "session.h"
#include "sub.h"
#include "subscribe.h"

/*
 * One SubscribeMany being built or waited for: its items' indexes in the
 * caller's array.  The reply's handler writes it on the dispatch thread, so
 * it lives in c->batch (batch_of()), never on the caller's stack.
 */
struct sub_batch {
	size_t n, bytes;
	size_t idx[MMN_BATCH_MAX];
	struct mmn_sub *subs[MMN_BATCH_MAX]; /* the reply's handler sets each linked one to NULL */
	int err[MMN_BATCH_MAX];
};

static size_t batch_limit(const struct mmn_client *c)
{
	return c->max_batch < MMN_BATCH_MAX ? c->max_batch : MMN_BATCH_MAX;
}

/*
 * Send @b and wait for its reply (c->req_lock and c->lock held); then each
 * item's result is in b->err, and b->subs holds the handles not linked.  A
 * whole-batch failure (an Error, a lost connection, a timeout) is every
 * item's.
 */
static void request_batch(struct mmn_client *c, struct sub_batch *b)
{
	uint64_t req = c->req_id = ++c->next_req;
	int r;

	c->req_done = false;
	c->req_batch = b->subs;
	c->req_batch_err = b->err;
	c->req_nbatch = b->n;
	for (size_t k = 0; k < b->n; k++)
		b->err[k] = -EPROTO; /* unless the reply says otherwise */
	r = mmn__sub_send_subscribe_many(c, b->subs, b->n, req, false);
	if (r >= 0)
		r = mmn__session_wait_reply(c, req);
	c->req_id = 0;
	c->req_batch = NULL;
	c->req_batch_err = NULL;
	c->req_nbatch = 0;
	for (size_t k = 0; k < b->n && r < 0; k++)
		b->err[k] = r;
}

/* Hand out what @b linked, report what it did not (c->lock held). */
static size_t batch_results(struct sub_batch *b, struct mmn_sub_request *reqs)
{
	size_t ok = 0;

	for (size_t k = 0; k < b->n; k++) {
		struct mmn_sub_request *q = &reqs[b->idx[k]];

		q->error = b->err[k];
		if (!q->error) {
			mmn__subscribe_hand_out(q->sub);
			ok++;
		} else {
			mmn__sub_free(b->subs[k]);
			q->sub = NULL;
		}
	}
	b->n = 0;
	b->bytes = 0;
	return ok;
}

/*
 * Subscribe the prepared items of @reqs from @i on (c->req_lock and
 * c->lock held) in one batch: as many as fit.  Returns the index after the
 * last item taken; *@ok counts the successes.
 */
static size_t subscribe_batch(struct mmn_client *c, struct mmn_sub_request *reqs, size_t i, size_t n,
			      struct sub_batch *b, size_t *ok)
{
	size_t limit = batch_limit(c);

	for (; i < n && b->n < limit; i++) {
		struct mmn_sub *s = reqs[i].sub;
		size_t bytes;

		if (!s)
			continue; /* failed before any round trip */
		reqs[i].error = mmn__subscribe_check(c, s);
		if (reqs[i].error) {
			mmn__sub_free(s);
			reqs[i].sub = NULL;
			continue;
		}
		bytes = mmn__sub_item_bytes(s, false);
		if (b->n && !mmn__batch_fits(b->bytes + bytes))
			break;
		b->idx[b->n] = i;
		b->subs[b->n] = s;
		b->n++;
		b->bytes += bytes;
	}
	if (b->n) {
		request_batch(c, b);
		*ok += batch_results(b, reqs);
	}
	return i;
}

/* One Subscribe per item: an mmnd without batches (c->req_lock and c->lock held). */
static size_t subscribe_one(struct mmn_client *c, struct mmn_sub_request *q)
{
	if (!q->sub)
		return 0;
	q->error = mmn__subscribe_locked(c, q->sub);
	if (!q->error) {
		mmn__subscribe_hand_out(q->sub);
		return 1;
	}
	mmn__sub_free(q->sub);
	q->sub = NULL;
	return 0;
}

/* The items' new handles, checked as mmn_subscribe() checks its arguments. */
static void prepare(struct mmn_client *c, struct mmn_sub_request *reqs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct mmn_sub_request *q = &reqs[i];

		q->sub = mmn__subscribe_new(c, q->pid, q->start, q->length, q->opts, &q->error);
	}
}

/* Nothing could be sent: every prepared item fails with @err (and so does the call). */
static int fail_all(struct mmn_sub_request *reqs, size_t n, int err)
{
	for (size_t i = 0; i < n; i++) {
		if (!reqs[i].sub)
			continue;
		mmn__sub_free(reqs[i].sub);
		reqs[i].sub = NULL;
		reqs[i].error = err;
	}
	return err;
}

/*
 * c->batch, mapped at the first SubscribeMany and kept (c->req_lock held):
 * memory the dispatch thread writes without faulting (memory.h).  Empty, or
 * NULL (-ENOMEM).
 */
static struct sub_batch *batch_of(struct mmn_client *c)
{
	if (!c->batch) {
		c->batch = mmn__memory_map(sizeof(struct sub_batch));
		c->batch_len = c->batch ? sizeof(struct sub_batch) : 0;
	}
	if (c->batch)
		c->batch->n = c->batch->bytes = 0;
	return c->batch;
}

MMN_EXPORT int mmn_subscribe_many(struct mmn_client *c, struct mmn_sub_request *reqs, size_t n)
{
	struct sub_batch *b;
	size_t i = 0, ok = 0;

	if (!c || (!reqs && n) || n > INT_MAX)
		return -EINVAL;
	if (mmn__forked(c))
		return -ECHILD;
	prepare(c, reqs, n);
	pthread_mutex_lock(&c->req_lock);
	pthread_mutex_lock(&c->lock);
	b = c->state == CONN_CONNECTED ? batch_of(c) : NULL;
	if (!b) {
		int err = c->state == CONN_CONNECTED ? -ENOMEM : -ENOTCONN;

		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&c->req_lock);
		return fail_all(reqs, n, err);
	}
	mmn__sub_reserve(c, n);
	while (i < n) {
		if (!batch_limit(c))
			ok += subscribe_one(c, &reqs[i++]);
		else
			i = subscribe_batch(c, reqs, i, n, b, &ok);
	}
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->req_lock);
	return (int)ok;
}

/* The handles of one client being removed, and the ids mmnd must be told of. */
struct unsub_batch {
	struct mmn_client *c;
	uint64_t conn_gen; /* the connection the ids belong to */
	size_t n, nids;
	struct mmn_sub *subs[MMN_BATCH_MAX];
	uint64_t ids[MMN_BATCH_MAX];
};

/*
 * Read what mmnd sent meanwhile (c->lock held), without growing the event
 * queue: the replies to the requests sent here are read only so, when
 * nothing else dispatches, and unread they would fill the socket until
 * mmnd, and then this thread, block.
 */
static void read_replies(struct mmn_client *c)
{
	while (mmn__queue_has_room(c) && mmn__conn_read_packet(c) > 0)
		;
}

/* Tell mmnd (c->lock held): one UnsubscribeMany, or one Unsubscribe per id without batches. */
static void tell_mmnd(struct unsub_batch *b)
{
	struct mmn_client *c = b->c;

	for (size_t k = 0; k < b->nids && b->conn_gen == c->conn_gen; k++) {
		/* Not once the connection is gone: its subscriptions went with it. */
		if (c->max_batch) {
			mmn__sub_send_unsubscribe_many(c, b->ids, b->nids);
			break;
		}
		mmn__sub_send_unsubscribe(c, b->ids[k]);
		if (k % 16 == 15)
			read_replies(c);
	}
	read_replies(c);
}

/* Whether @s's id still fits in @b (c->lock held). */
static bool unsub_fits(struct unsub_batch *b, const struct mmn_sub *s)
{
	size_t limit = b->c->max_batch ? batch_limit(b->c) : MMN_BATCH_MAX;

	if (b->n == MMN_BATCH_MAX || b->nids == limit)
		return false;
	b->ids[b->nids] = s->sub_id;
	return mmn__batch_fits(mmn__sub_ids_bytes(b->ids, b->nids + 1));
}

/* Remove @s into @b (c->lock held, released while a callback of @s finishes): 0 or -EALREADY. */
static int unsub_add(struct unsub_batch *b, struct mmn_sub *s)
{
	struct mmn_client *c = b->c;
	bool tell;
	int r;

	r = mmn__unsubscribe_begin(c, s, &tell);
	if (r)
		return r;
	if (b->conn_gen != c->conn_gen) {
		/* Lost while waiting for a callback: the ids so far are of no connection. */
		b->conn_gen = c->conn_gen;
		b->nids = 0;
	}
	b->subs[b->n++] = s;
	if (tell)
		b->ids[b->nids++] = s->sub_id;
	return 0;
}

/*
 * Remove the handles of @subs from @i on that belong to @c, as many as one
 * batch takes (c->lock held, released while callbacks run); each result
 * into @errors (if not NULL), the successes counted in *@removed.  Returns
 * the index after the last item taken.
 */
static size_t unsubscribe_batch(struct mmn_client *c, struct mmn_sub **subs, size_t i, size_t n, int *errors,
				int *removed)
{
	struct unsub_batch b = {.c = c, .conn_gen = c->conn_gen};

	for (; i < n; i++) {
		struct mmn_client *sc;
		int r = mmn__sub_client(subs[i], &sc);

		if (r || sc != c || !unsub_fits(&b, subs[i]))
			break;
		r = unsub_add(&b, subs[i]);
		if (errors)
			errors[i] = r;
		*removed += !r;
	}
	tell_mmnd(&b);
	for (size_t k = 0; k < b.n; k++)
		mmn__unsubscribe_finish(c, b.subs[k]);
	return i;
}

MMN_EXPORT int mmn_unsubscribe_many(struct mmn_sub **subs, size_t n, int *errors)
{
	int removed = 0;
	size_t i = 0;

	if ((!subs && n) || n > INT_MAX)
		return -EINVAL;
	while (i < n) {
		struct mmn_client *c;
		int r = mmn__sub_client(subs[i], &c);

		if (r) {
			if (errors)
				errors[i] = r;
			i++;
			continue;
		}
		pthread_mutex_lock(&c->lock);
		i = unsubscribe_batch(c, subs, i, n, errors, &removed);
		pthread_mutex_unlock(&c->lock);
	}
	return removed;
}
