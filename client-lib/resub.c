/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Resubscription after a reconnection (all under c->lock, on the thread
 * that reads mmnd's packets): every live sub is subscribed again (with the
 * uffd source mmnd registers it leniently: resubscribe), in SubscribeMany
 * batches when mmnd takes them, else one Subscribe each.  At most
 * RESUB_WINDOW requests are in flight: each reply sends the next one, so
 * neither side's socket fills however many subs there are (the replies are
 * read only between packets, and this runs inside one).
 *
 * Request ids: a re-Subscribe request's id has RESUB_REQ set, from a
 * counter of its own, so the ids of one connection's requests are exactly
 * [resub_lo, resub_hi].  The n items of a batch with id R are keyed R + 0 ..
 * R + n - 1 (the next request's id is R + n): item j is the sub whose
 * resub_req is R + j and whose resub_idx is j.  A reply answers the items it
 * names; those it does not name fail, so no sub waits after its request's
 * reply; a result for a sub removed meanwhile is unsubscribed.
 */
#include <errno.h>

#include "client.h"
#include "conn.h"
#include "queue.h"
#include "resub.h"
#include "seq.h"
#include "sub.h"

#define RESUB_REQ    (1ull << 63)
#define RESUB_WINDOW 8

/* Reply to @s's re-Subscribe: RESYNC (attached), or RESYNC and release (dead). */
static void resub_done(struct mmn_client *c, struct mmn_sub *s, int err, const Mmn__V1__SubscribeReply *rep)
{
	const struct mmn_range r = {.start = s->start, .end = s->end, .event = MMN_EVENT_RESYNC};

	mmn__sub_set_resub(c, s, 0);
	if (!err && !mmn__seqpage_slot(c, rep->seq_slot))
		err = -EPROTO;
	if (err) {
		s->state = HANDLE_DEAD;
		mmn__seq_kill(s);
		mmn__enqueue(c, QEV_RESYNC_FAIL, s, &r, err);
	} else {
		mmn__sub_attach(s, rep->sub_id, rep->seq_slot, rep->seq_gen, false);
		mmn__enqueue(c, QEV_RESYNC, s, &r, 0);
	}
}

/* The next sub of c->resub_next to resubscribe (the others fail or are skipped), or NULL. */
static struct mmn_sub *next_sub(struct mmn_client *c)
{
	const struct mmn_range whole = {.event = MMN_EVENT_RESYNC};

	while (c->resub_next) {
		struct mmn_sub *s = c->resub_next;
		struct mmn_range r = whole;

		if (s->state != HANDLE_ACTIVE) {
			c->resub_next = s->next;
			continue;
		}
		if (!c->needs_uffd || !s->pid)
			return s;
		c->resub_next = s->next;
		r.start = s->start;
		r.end = s->end;
		s->state = HANDLE_DEAD;
		mmn__seq_kill(s);
		mmn__enqueue(c, QEV_RESYNC_FAIL, s, &r, -EOPNOTSUPP);
	}
	return NULL;
}

/* Send the next request: 1, 0 when every sub is sent, or a send error. */
static int send_next(struct mmn_client *c)
{
	size_t limit = c->max_batch < MMN_BATCH_MAX ? c->max_batch : MMN_BATCH_MAX, n = 0, bytes = 0;
	struct mmn_sub *batch[MMN_BATCH_MAX], *s;
	uint64_t id = RESUB_REQ | (c->resub_hi + 1);

	while (n < (limit ? limit : 1) && (s = next_sub(c))) {
		size_t b = mmn__sub_item_bytes(s, true);

		if (n && !mmn__batch_fits(bytes + b))
			break;
		c->resub_next = s->next;
		s->resub_idx = (uint8_t)n;
		mmn__sub_set_resub(c, s, id + n);
		batch[n++] = s;
		bytes += b;
	}
	if (!n)
		return 0;
	c->resub_hi += n;
	c->resub_inflight++;
	if (!limit)
		return mmn__sub_send_subscribe(c, batch[0], id, true) < 0 ? -ECONNRESET : 1;
	return mmn__sub_send_subscribe_many(c, batch, n, id, true) < 0 ? -ECONNRESET : 1;
}

/* Keep RESUB_WINDOW requests in flight; connected once all are answered.  0 or a send error. */
static int fill_window(struct mmn_client *c)
{
	int r = 0;

	while (c->resub_inflight < RESUB_WINDOW && (r = send_next(c)) > 0)
		;
	if (r < 0)
		return r; /* the caller drops the connection */
	if (!c->resub_inflight)
		mmn__conn_set_connected(c);
	else
		c->state = CONN_RESUB;
	return 0;
}

int mmn__resub_start(struct mmn_client *c)
{
	c->resub_next = c->subs;
	c->resub_inflight = 0;
	c->resub_lo = c->resub_hi + 1;
	return fill_window(c);
}

bool mmn__resub_is_reply(const struct mmn_client *c, uint64_t req)
{
	uint64_t k = req & ~RESUB_REQ;

	return (req & RESUB_REQ) && k >= c->resub_lo && k <= c->resub_hi;
}

/* Item @j of the request @req, or NULL (removed meanwhile, or not of that request). */
static struct mmn_sub *item(struct mmn_client *c, uint64_t req, size_t j)
{
	struct mmn_sub *s = mmn__sub_by_resub_req(c, req + j);

	return s && s->resub_idx == j ? s : NULL;
}

/* Result @j of a SubscribeManyReply, or of a lone SubscribeReply (@mr NULL). */
static int result(const Mmn__V1__SubscribeManyReply *mr, const Mmn__V1__SubscribeReply **rep, size_t j)
{
	int err;

	if (!mr)
		return 0;
	err = mr->results[j]->error;
	*rep = err ? NULL : mr->results[j]->reply;
	if (err > 0 || err < -4095 || (!err && !*rep))
		return -EPROTO;
	return err;
}

int mmn__resub_answer(struct mmn_client *c, uint64_t req, int err, const Mmn__V1__SubscribeReply *sr,
		      const Mmn__V1__SubscribeManyReply *mr)
{
	size_t n = mr ? mr->n_results : sr ? 1 : 0;

	for (size_t j = 0; j < n && j < MMN_BATCH_MAX; j++) {
		const Mmn__V1__SubscribeReply *rep = sr;
		int e = result(mr, &rep, j);
		struct mmn_sub *s = item(c, req, j);

		if (s)
			resub_done(c, s, e, rep);
		else if (!e)
			mmn__sub_send_unsubscribe(c, rep->sub_id); /* removed while in flight */
	}
	/* What the reply did not answer (an Error for the whole batch) fails. */
	for (size_t j = 0; j < MMN_BATCH_MAX && ((req + j) & ~RESUB_REQ) <= c->resub_hi; j++) {
		struct mmn_sub *s = item(c, req, j);

		if (s)
			resub_done(c, s, err ? err : -EPROTO, NULL);
	}
	if (c->resub_inflight)
		c->resub_inflight--;
	return fill_window(c);
}

void mmn__resub_lost(struct mmn_client *c)
{
	for (struct mmn_sub *s = c->subs; s; s = s->next)
		if (s->resub_req)
			mmn__sub_set_resub(c, s, 0);
	c->resub_next = NULL;
	c->resub_inflight = 0;
}
