/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Subscriptions and their kernel subscriptions (ksubs).
 *
 * Coalescing: the source watches whole granules (caps.ksub_granule, 2 MiB
 * for mmn.ko).  A new sub is counted on every ksub its granule span
 * overlaps; only granules no ksub covers get a new ksub, one per gap, so
 * subscribing next to a watched range costs the source nothing and an
 * munmap across many subs lists few ksubs (one source round trip).  A ksub
 * is never moved, resized or re-created: it goes when no sub overlaps it
 * any more (so it may stay wider than its remaining subs: invalidations
 * nobody receives are acked at once).  Every step is O(log n) in the
 * target's ksubs and subs.  A ksub's BLOCKING flag is set while a blocking
 * sub overlaps it, until a refused non-blockable (OOM) invalidation of it
 * was acked by its blocking subs: then it is cleared for good (reaped, see
 * struct ksub).
 *
 * Deferral: while an invalidation is in flight on a target its
 * index and ksubs do not change.  Subscribe and Unsubscribe received then
 * are queued on the target and applied, in order, when its last in-flight
 * invalidation ends; the reply is sent then.  Besides determinism this
 * keeps mmnd from asking the kernel to insert a notifier while the kernel
 * waits for mmnd's ack with the mmap lock held.
 */

#include "engine/sub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "engine/seqpage-slots.h"
#include "engine/itree.h"
#include "engine/list.h"
#include "engine/recips.h"
#include "engine/target.h"

struct ksub *mmn__ksub_find(struct broker *b, uint32_t id)
{
	struct idmap_node *n = mmn__idmap_find(&b->ksub_ids, id);

	return n ? container_of(n, struct ksub, idn) : NULL;
}

struct sub *mmn__client_find_sub(struct client *c, uint64_t sub_id)
{
	struct idmap_node *n = mmn__idmap_find(&c->b->sub_ids, sub_id);
	struct sub *s = n ? container_of(n, struct sub, idn) : NULL;

	return s && s->c == c ? s : NULL;
}

static bool sub_blocking(const struct sub *s)
{
	return s->flags == MMN__V1__SUB_FLAG__SUB_BLOCKING;
}

/* The granule-aligned extent [*gs, *ge) that covers [start, end) on @b's source. */
static void granule_span(const struct broker *b, uint64_t start, uint64_t end, uint64_t *gs, uint64_t *ge)
{
	uint64_t g = b->src->caps.ksub_granule;

	if (g < MMN_PAGE_SIZE)
		g = MMN_PAGE_SIZE;
	*gs = start & ~(g - 1);
	/* A range ending in the last granule of the address space ends there. */
	*ge = end > UINT64_MAX - (g - 1) ? end : (end + g - 1) & ~(g - 1);
}

/* Remove @k from the source and free it.  No sub counts it any more. */
static void ksub_destroy(struct ksub *k)
{
	struct broker *b = k->t->b;
	struct target *t = k->t;

	if (b->src && !b->source_lost)
		b->src->ops->ksub_del(b->src, k->id);
	mmn__idmap_del(&b->ksub_ids, &k->idn);
	b->nksubs--;
	mmn__itree_remove(&t->ksubs, &k->node);
	free(k);
	mmn__target_put(t);
}

static void ksub_update_blocking(struct ksub *k)
{
	struct broker *b = k->t->b;
	bool want = k->nblocking > 0 && !k->reaped;

	if (want == k->blocking || b->source_lost)
		return;
	if (b->src->ops->ksub_set_blocking && b->src->ops->ksub_set_blocking(b->src, k->id, want) < 0) {
		if (mmn__ratelimit_ok(&b->rl_client, mmn__broker_now(b)))
			mmn__log(LOG_WARNING, NULL, "Failed to set blocking=%d on kernel subscription %u",
				 want, k->id);
		return;
	}
	k->blocking = want;
}

/* Ask the source for a ksub on [start, end) of @t and index it (no subs yet). */
static int ksub_new(struct target *t, uint64_t start, uint64_t end, bool blocking, struct ksub **out)
{
	struct broker *b = t->b;
	struct source_target st = {.pid = t->pid, .pidfd = t->pidfd, .uffd = -1};
	struct ksub *k;
	uint32_t id;
	int r;

	if (b->source_lost)
		return -ENODEV;
	/* The source's own bound sits above ours: mmnd evicts before the kernel gives up. */
	r = b->src->ops->ksub_add(b->src, &st, start, end - start, blocking, b->opt.ack_cap_ms + 250, &id);
	if (r < 0)
		return r;
	k = calloc(1, sizeof(*k));
	if (!k) {
		b->src->ops->ksub_del(b->src, id);
		return -ENOMEM;
	}
	k->id = id;
	k->idn.id = id;
	k->t = t;
	k->start = start;
	k->end = end;
	k->blocking = blocking;
	k->node.start = start;
	k->node.last = end - 1;
	t->refs++;
	mmn__itree_insert(&t->ksubs, &k->node);
	mmn__idmap_add(&b->ksub_ids, &k->idn);
	b->nksubs++;
	*out = k;
	return 0;
}

static int first_ksub(struct itree_node *n, void *ud)
{
	*(struct ksub **)ud = container_of(n, struct ksub, node);
	return 1; /* the walk is in ascending order: the first is the lowest */
}

/* The ksub of @t with the lowest start overlapping [start, end), or NULL.  O(log n). */
static struct ksub *ksub_first(struct target *t, uint64_t start, uint64_t end)
{
	struct ksub *k = NULL;

	mmn__itree_query(&t->ksubs, start, end - 1, first_ksub, &k);
	return k;
}

/*
 * Iterate over the ksubs of @t overlapping [gs, ge) in ascending order (they
 * are disjoint), one O(log n) query each, so the body may add ksubs; it
 * must not free @k (the walk resumes at @k's end).
 */
#define for_each_ksub(k, t, gs, ge)                                                                          \
	for (uint64_t at_ = (gs); at_ < (ge) && ((k) = ksub_first((t), at_, (ge))) != NULL; at_ = (k)->end)

/* A ksub that nothing counts goes (unless mmn__ksub_release is freeing it). */
static void ksub_maybe_destroy(struct ksub *k)
{
	if (!k->nsubs && !k->releasing)
		ksub_destroy(k);
}

/* @s overlaps @k: count it (or, @delta -1, no longer); BLOCKING follows. */
static void ksub_count(struct ksub *k, const struct sub *s, int delta)
{
	k->nsubs += (uint32_t)delta;
	if (sub_blocking(s)) {
		k->nblocking += (uint32_t)delta;
		ksub_update_blocking(k);
	}
}

/*
 * Walk the ksubs over [gs, ge), uncounting @s on each (NULL: none to
 * uncount), and free those no sub counts any more.  Never allocates.
 */
static void ksubs_drop(struct target *t, const struct sub *s, uint64_t gs, uint64_t ge)
{
	struct ksub *k;

	for (uint64_t at = gs; at < ge && (k = ksub_first(t, at, ge)) != NULL;) {
		at = k->end; /* before @k may go */
		if (s)
			ksub_count(k, s, -1);
		ksub_maybe_destroy(k);
	}
}

/*
 * Create a ksub for every gap of [gs, ge) no ksub covers.  Existing ksubs
 * are never touched: subscribing inside a watched range costs the source
 * nothing.  On failure the new ones (nothing counts them yet) go again.
 */
static int ksub_fill_gaps(struct target *t, uint64_t gs, uint64_t ge, bool blocking)
{
	uint64_t next = gs;
	struct ksub *k, *made;
	int r = 0;

	while (next < ge && !r) {
		k = ksub_first(t, next, ge);
		if (!k || k->start > next)
			r = ksub_new(t, next, k ? k->start : ge, blocking, &made);
		next = k ? k->end : ge;
	}
	if (r < 0)
		ksubs_drop(t, NULL, gs, ge);
	return r;
}

/*
 * Watch @s: count it on every ksub its granule span overlaps, creating
 * ksubs only for the granules nobody watches yet.  Only while the target is
 * quiescent.  0, or a negative errno with nothing changed.
 */
static int ksub_attach(struct target *t, struct sub *s)
{
	uint64_t gs, ge;
	struct ksub *k;
	int r;

	granule_span(t->b, s->start, s->end, &gs, &ge);
	r = ksub_fill_gaps(t, gs, ge, sub_blocking(s));
	if (r < 0)
		return r;
	for_each_ksub(k, t, gs, ge)
		ksub_count(k, s, 1);
	return 0;
}

/* Stop counting @s; a ksub no sub overlaps any more goes.  Never allocates. */
static void ksub_detach(struct target *t, const struct sub *s)
{
	uint64_t gs, ge;

	granule_span(t->b, s->start, s->end, &gs, &ge);
	ksubs_drop(t, s, gs, ge);
}

uint32_t mmn__sub_ksub_id(const struct sub *s)
{
	struct ksub *k = ksub_first(s->t, s->start, s->start + 1);

	return k ? k->id : 0;
}

/* Take @s out of the index and its ksubs (dropping those it was the last on) and free it. */
static void sub_finalize(struct sub *s)
{
	struct target *t = s->t;

	if (s->indexed) {
		mmn__itree_remove(&t->subs, &s->node);
		s->indexed = false;
		ksub_detach(t, s);
	}
	t->b->stats.subscriptions--;
	free(s);
	mmn__target_put(t);
}

/*
 * uffd source: the client's range is registered with its connection's uffd
 * by mmnd (the client keeps no descriptor of it) before SubscribeReply, and
 * unregistered when the sub leaves the client, except where another sub of
 * the same connection still covers it (found in the target's index, so an
 * unsubscribe stays O(log n)).  A dropped client's uffd is closed instead.
 */
static int sub_uffd_register(struct client *c, const struct target *t, const struct sub_req *r)
{
	const struct source_ops *ops = c->b->src->ops;

	if (!ops->uffd_register || t->pid != c->pid)
		return 0;
	return ops->uffd_register(c->b->src, c->pid, c->id, r->start, r->end, !r->resubscribe);
}

static uint64_t page_down(uint64_t a)
{
	return a & ~(MMN_PAGE_SIZE - 1);
}

static uint64_t page_up(uint64_t a)
{
	return a > UINT64_MAX - (MMN_PAGE_SIZE - 1) ? a : (a + MMN_PAGE_SIZE - 1) & ~(MMN_PAGE_SIZE - 1);
}

/* Walking the subs over [from, to) in ascending order: the gaps no other sub of @c covers. */
struct uncovered {
	const struct sub *s;
	uint64_t from, to;
	struct client *c;
};

static void unregister_range(struct client *c, uint64_t from, uint64_t to)
{
	const struct source *src = c->b->src;

	if (from < to)
		src->ops->uffd_unregister(c->b->src, c->pid, c->id, from, to);
}

static int uncovered_visit(struct itree_node *n, void *ud)
{
	struct uncovered *u = ud;
	const struct sub *o = container_of(n, struct sub, node);
	uint64_t os = page_down(o->start), oe = page_up(o->end);

	if (o == u->s || o->c != u->c)
		return 0;
	/* Ascending start: everything before @os not covered so far is a gap. */
	if (os > u->from)
		unregister_range(u->c, u->from, os < u->to ? os : u->to);
	if (oe > u->from)
		u->from = oe;
	return u->from >= u->to;
}

static void sub_uffd_unregister(struct client *c, const struct sub *s)
{
	struct broker *b = c->b;
	struct uncovered u = {.s = s, .c = c, .from = page_down(s->start), .to = page_up(s->end)};

	if (!b->src->ops->uffd_unregister || s->t->pid != c->pid || c->dropping || b->source_lost)
		return;
	/* [from, to) is page aligned: a sub's pages overlap it exactly when its bytes do. */
	mmn__itree_query(&s->t->subs, u.from, u.to - 1, uncovered_visit, &u);
	if (u.from < u.to)
		unregister_range(c, u.from, u.to);
}

/* @s no longer holds its Unsubscribe's reply; the last holder sends it (unless @killed, see struct unsub_wait). */
static void unsub_wait_put(struct sub *s, bool killed)
{
	struct unsub_wait *w = s->unsub;
	const struct engine_sink *sk = &s->t->b->sink;

	s->unsub = NULL;
	if (--w->remaining)
		return;
	if (w->many && !w->c->dropping)
		sk->send_unsubscribed_many(w->c, w->request_id, w->errors, w->n);
	else if (!w->many && !killed)
		sk->send_status(w->c, w->request_id, 0);
	free(w);
}

/* Detach @s from its client: free its slot, unlink, let go of a waiting Unsubscribe. */
static void sub_detach_client(struct sub *s, bool killed)
{
	struct client *c = s->c;

	if (!c)
		return;
	sub_uffd_unregister(c, s);
	mmn__seqpage_free(c, s->slot);
	list_del(&s->clink);
	mmn__idmap_del(&c->b->sub_ids, &s->idn);
	c->nsubs--;
	mmn__client_uid_subs(c, -1);
	if (s->unsub)
		unsub_wait_put(s, killed);
	s->c = NULL;
}

static struct sub *sub_new(struct target *t, struct client *c, const struct sub_req *r)
{
	struct sub *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->c = c;
	s->t = t;
	s->start = r->start;
	s->end = r->end;
	s->flags = r->flags;
	s->mask = r->mask;
	s->timeout_ms = r->timeout_ms;
	s->no_end = r->no_end;
	s->state = SUB_LIVE;
	list_init(&s->d.link);
	s->d.kind = DEF_REMOVE;
	s->node.start = s->start;
	s->node.last = s->end - 1;
	return s;
}

/* Room for @s everywhere it will be (slot, every event's recipients, the source); 0 or -errno. */
static int sub_prepare(struct broker *b, struct target *t, struct client *c, struct sub *s,
		       const struct sub_req *r)
{
	int err = mmn__seqpage_alloc(c, &s->slot, &s->gen);

	if (err < 0)
		return err;
	/* Room for it in every event first: fan-out must not allocate. */
	err = b->stats.subscriptions >= UINT32_MAX ? -ENOMEM
						   : mmn__recips_reserve(b, (uint32_t)b->stats.subscriptions + 1);
	if (!err) {
		err = sub_uffd_register(c, t, r);
		/* A lenient pass that gave up leaves what it registered: take back what is not covered. */
		if (err < 0 && r->resubscribe)
			sub_uffd_unregister(c, s);
	}
	if (!err) {
		err = ksub_attach(t, s);
		if (err < 0)
			sub_uffd_unregister(c, s);
	}
	if (err < 0)
		mmn__seqpage_free(c, s->slot);
	return err;
}

int mmn__sub_create(struct target *t, struct client *c, const struct sub_req *r, struct sub_result *res)
{
	struct broker *b = t->b;
	struct sub *s = sub_new(t, c, r);
	int err = s ? sub_prepare(b, t, c, s, r) : -ENOMEM;

	if (err < 0) {
		free(s);
		mmn__target_put(t);
		*res = (struct sub_result){.error = err};
		return err;
	}
	s->id = ++b->next_sub_id;
	s->idn.id = s->id;
	mmn__itree_insert(&t->subs, &s->node);
	s->indexed = true;
	list_add_tail(&c->subs, &s->clink);
	mmn__idmap_add(&b->sub_ids, &s->idn);
	c->nsubs++;
	mmn__client_uid_subs(c, 1);
	b->stats.subscriptions++;
	*res = (struct sub_result){.sub_id = s->id, .slot = s->slot, .gen = s->gen, .timeout_ms = s->timeout_ms};
	return 0;
}

/* Create the subscription now (target quiescent) and answer.  Consumes the target reference. */
static void sub_create(struct target *t, struct client *c, uint64_t request_id, const struct sub_req *r)
{
	const struct engine_sink *sk = &t->b->sink;
	struct sub_result res;

	if (mmn__sub_create(t, c, r, &res) < 0)
		sk->send_error(c, request_id, res.error, "subscription failed");
	else
		sk->send_subscribed(c, request_id, &res);
}

/*
 * Subscribe @c to @r on @t (a validated and authorised request; takes over
 * the caller's reference on @t): now, or when the last invalidation in
 * flight on @t ends.  The reply is sent then.
 */
/* The requests @p counts while queued. */
static int pending_count(const struct pending_sub *p)
{
	return p->items ? (int)p->naccepted : 1;
}

/* Queue @p on @c and on @t's deferred list until @t quiesces. */
static void pending_queue(struct pending_sub *p, struct target *t)
{
	list_add_tail(&p->c->pending, &p->clink);
	p->c->npending += (uint32_t)pending_count(p);
	mmn__client_uid_subs(p->c, pending_count(p));
	mmn__sub_defer(t, &p->d);
}

/* @p leaves @c's queue (applied, or its client is going). */
static void pending_unqueue(struct pending_sub *p)
{
	list_del(&p->clink);
	p->c->npending -= (uint32_t)pending_count(p);
	mmn__client_uid_subs(p->c, -pending_count(p));
}

void mmn__sub_add(struct target *t, struct client *c, uint64_t request_id, const struct sub_req *r)
{
	struct pending_sub *p;

	if (!t->inflight) {
		sub_create(t, c, request_id, r);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		mmn__target_put(t);
		c->b->sink.send_error(c, request_id, -ENOMEM, "out of memory");
		return;
	}
	p->d.kind = DEF_SUBSCRIBE;
	p->c = c;
	p->request_id = request_id;
	p->req = *r;
	pending_queue(p, t);
}

/* The first target of batch @p still invalidating, or NULL when all are quiescent. */
static struct target *batch_busy_target(const struct pending_sub *p)
{
	for (uint32_t i = 0; i < p->n; i++)
		if (!p->items[i].res.error && p->items[i].t->inflight)
			return p->items[i].t;
	return NULL;
}

/* Every target of @p is quiescent: create its subs and answer, all in this callback. */
static void batch_run(struct pending_sub *p)
{
	for (uint32_t i = 0; i < p->n; i++) {
		struct sub_batch_item *it = &p->items[i];

		if (!it->res.error)
			mmn__sub_create(it->t, p->c, &it->r, &it->res);
		it->t = NULL;
	}
	p->c->b->sink.send_subscribed_many(p->c, p->request_id, p->items, p->n);
}

/* Drop @items: the target references of those not created, then the array. */
static void batch_items_free(struct sub_batch_item *items, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (!items[i].res.error && items[i].t)
			mmn__target_put(items[i].t);
	free(items);
}

/* Run batch @p now, or queue it on its first busy target. */
static void batch_try(struct pending_sub *p)
{
	struct target *busy = batch_busy_target(p);

	if (busy) {
		pending_queue(p, busy);
		return;
	}
	batch_run(p);
	batch_items_free(p->items, p->n);
	free(p);
}

void mmn__sub_add_many(struct client *c, uint64_t request_id, struct sub_batch_item *items, uint32_t n)
{
	struct pending_sub *p = calloc(1, sizeof(*p));

	if (!p) {
		batch_items_free(items, n);
		c->b->sink.send_error(c, request_id, -ENOMEM, "out of memory");
		return;
	}
	p->d.kind = DEF_SUBSCRIBE;
	p->c = c;
	p->request_id = request_id;
	p->items = items;
	p->n = n;
	for (uint32_t i = 0; i < n; i++)
		p->naccepted += !items[i].res.error;
	batch_try(p);
}

void mmn__pending_sub_cancel(struct pending_sub *p)
{
	pending_unqueue(p);
	p->c = NULL;
}

int mmn__sub_remove(struct client *c, uint64_t request_id, uint64_t sub_id, struct unsub_wait *w)
{
	struct sub *s = mmn__client_find_sub(c, sub_id);

	if (!s || s->state != SUB_LIVE)
		return -ENOENT;
	if (!s->t->inflight) {
		sub_detach_client(s, false);
		sub_finalize(s);
		return 0;
	}
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -ENOMEM;
		w->c = c;
		w->request_id = request_id;
	}
	w->remaining++;
	/* Its pending acks are moot; it still gets InvalidateEnd (pairing). */
	s->state = SUB_DYING;
	s->unsub = w;
	mmn__recips_close_sub(c->b, s, true);
	mmn__sub_defer(s->t, &s->d);
	return 1;
}

int mmn__sub_unsubscribe(struct client *c, uint64_t request_id, uint64_t sub_id)
{
	int r = mmn__sub_remove(c, request_id, sub_id, NULL);

	if (r == -ENOENT)
		return c->b->sink.send_error(c, request_id, r, "no such subscription");
	if (r < 0)
		return c->b->sink.send_error(c, request_id, r, "out of memory");
	return r ? 0 : c->b->sink.send_status(c, request_id, 0);
}

void mmn__sub_kill(struct sub *s)
{
	if (s->state == SUB_DEAD)
		return;
	mmn__recips_close_sub(s->t->b, s, false);
	sub_detach_client(s, true);
	if (s->t->inflight) {
		if (s->state != SUB_DYING)
			mmn__sub_defer(s->t, &s->d);
		s->state = SUB_DEAD;
		return;
	}
	if (s->state == SUB_DYING)
		list_del(&s->d.link);
	s->state = SUB_DEAD;
	sub_finalize(s);
}

void mmn__sub_apply_deferred(struct target *t, struct deferred *d)
{
	if (d->kind == DEF_SUBSCRIBE) {
		struct pending_sub *p = container_of(d, struct pending_sub, d);

		if (p->items) {
			if (!p->c) {
				batch_items_free(p->items, p->n);
				free(p);
				return;
			}
			pending_unqueue(p);
			batch_try(p);
			return;
		}
		if (p->c) {
			pending_unqueue(p);
			sub_create(t, p->c, p->request_id, &p->req);
		} else {
			mmn__target_put(t);
		}
		free(p);
	} else {
		struct sub *s = container_of(d, struct sub, d);

		sub_detach_client(s, false);
		s->state = SUB_DEAD;
		sub_finalize(s);
	}
}

static void send_release(struct sub *s, bool released, uint32_t reason)
{
	if (!released) {
		s->t->b->sink.send_revoked(s->c, s->id, reason, 0);
		return;
	}
	s->t->b->sink.send_release(s->c, s->id);
}

/*
 * The source is done with @k (target exited, or it revoked the ksub): every
 * sub on it is told Release/Revoked once and freed now, without waiting for
 * quiescence: nothing will be delivered for @k again.  The ksub is freed
 * with the one ksub_del the source contract asks for.
 */
static int first_sub(struct itree_node *n, void *ud)
{
	*(struct sub **)ud = container_of(n, struct sub, node);
	return 1;
}

void mmn__ksub_release(struct ksub *k, bool released, uint32_t reason)
{
	struct target *t = k->t;
	struct sub *s;

	t->refs++;
	k->releasing = true;
	/* Each sub leaves the index here, so the next query finds the next one. */
	while ((s = NULL, mmn__itree_query(&t->subs, k->start, k->end - 1, first_sub, &s), s)) {
		if (s->c && s->state != SUB_DEAD)
			send_release(s, released, reason);
		if (s->state != SUB_DEAD) {
			mmn__recips_close_sub(t->b, s, false);
			sub_detach_client(s, true);
		}
		if (list_linked(&s->d.link))
			list_del(&s->d.link);
		s->state = SUB_DEAD;
		mmn__itree_remove(&t->subs, &s->node);
		s->indexed = false;
		/* Its other ksubs may go now; @k stays until the end (releasing). */
		ksub_detach(t, s);
		t->b->stats.subscriptions--;
		free(s);
		mmn__target_put(t);
	}
	ksub_destroy(k);
	mmn__target_put(t);
}

/*
 * The source lost events for @k (REVOKED desync): everything under it may
 * have changed.  Each live sub gets an Invalidate{RESYNC} of its whole range
 * and its InvalidateEnd (a pair), its slot moves on, and the source is told
 * the consumers are resynchronised.
 */
void mmn__sub_resync(struct sub *s)
{
	const struct engine_sink *sk;
	uint64_t seq;

	if (!s->c || s->state != SUB_LIVE)
		return;
	sk = &s->t->b->sink;
	seq = s->inflight ? mmn__seqpage_value(s->c, s->slot) : mmn__seqpage_begin(s->c, s->slot);
	sk->send_invalidate(s->c, s, s->id, 0, s->start, s->end, MMN__V1__EVENT_TYPE__EVENT_RESYNC, false,
			    false, seq, 0, false);
	seq = s->inflight ? mmn__seqpage_value(s->c, s->slot) : mmn__seqpage_end(s->c, s->slot);
	if (!s->no_end)
		sk->send_invalidate_end(s->c, s->id, 0, seq);
}

static int resync_visit(struct itree_node *n, void *ud)
{
	(void)ud;
	mmn__sub_resync(container_of(n, struct sub, node));
	return 0;
}

void mmn__ksub_resync_subs(struct ksub *k)
{
	mmn__itree_query(&k->t->subs, k->start, k->end - 1, resync_visit, NULL);
}

void mmn__ksub_resync(struct ksub *k)
{
	struct broker *b = k->t->b;

	mmn__ksub_resync_subs(k);
	if (b->src->ops->ksub_resynced)
		b->src->ops->ksub_resynced(b->src, k->id);
}

void mmn__ksub_reaped(struct ksub *k)
{
	k->reaped = true;
	ksub_update_blocking(k);
}

void mmn__sub_defer(struct target *t, struct deferred *d)
{
	list_add_tail(&t->deferred, &d->link);
}

/*
 * The last in-flight invalidation of @t ended: apply what was deferred, in
 * arrival order.  An applied change cannot start an invalidation, so this
 * terminates; a change deferred again (not possible here) would wait for
 * the next end.  Holds a reference so @t outlives its own deferred list.
 */
void mmn__sub_quiesce(struct target *t)
{
	if (t->inflight)
		return;
	t->refs++;
	while (!list_empty(&t->deferred) && !t->inflight) {
		struct deferred *d = list_entry(t->deferred.next, struct deferred, link);

		list_del(&d->link);
		mmn__sub_apply_deferred(t, d);
	}
	mmn__target_put(t);
}
