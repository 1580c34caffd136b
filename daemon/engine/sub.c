/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Subscriptions and their kernel subscriptions (ksubs).
 *
 * Coalescing: client ranges of one target that overlap or touch share one
 * ksub, page aligned, so an munmap across many client ranges costs the
 * source one round trip.  A new range that bridges several ksubs replaces
 * them with one covering their union (added first, so nothing is ever
 * unwatched).  When a sub leaves, a ksub the rest no longer spans is split
 * or shrunk the same way; it goes with its last sub.  Its BLOCKING flag is
 * set while any blocking sub is on it, until a refused non-blockable (OOM)
 * invalidation of it was acked by its blocking subs: then it is cleared for
 * good (reaped, see struct ksub).
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

static void khash_add(struct broker *b, struct ksub *k)
{
	struct ksub **h = &b->khash[k->id % KHASH_SIZE];

	k->hnext = *h;
	*h = k;
	b->nksubs++;
}

static void khash_del(struct broker *b, struct ksub *k)
{
	for (struct ksub **h = &b->khash[k->id % KHASH_SIZE]; *h; h = &(*h)->hnext) {
		if (*h == k) {
			*h = k->hnext;
			b->nksubs--;
			return;
		}
	}
}

struct ksub *mmn__ksub_find(struct broker *b, uint32_t id)
{
	for (struct ksub *k = b->khash[id % KHASH_SIZE]; k; k = k->hnext)
		if (k->id == id)
			return k;
	return NULL;
}

struct sub *mmn__client_find_sub(struct client *c, uint64_t sub_id)
{
	list_for_each(pos, &c->subs)
	{
		struct sub *s = list_entry(pos, struct sub, clink);

		if (s->id == sub_id)
			return s;
	}
	return NULL;
}

static bool sub_blocking(const struct sub *s)
{
	return s->flags == MMN__V1__SUB_FLAG__SUB_BLOCKING;
}

/* Remove @k from the source and free it.  Its subs must be gone. */
static void ksub_destroy(struct ksub *k)
{
	struct broker *b = k->t->b;
	struct target *t = k->t;

	if (b->src && !b->source_lost)
		b->src->ops->ksub_del(b->src, k->id);
	khash_del(b, k);
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

static void ksub_link_sub(struct ksub *k, struct sub *s)
{
	list_add_tail(&k->subs, &s->klink);
	s->k = k;
	k->nsubs++;
	if (sub_blocking(s))
		k->nblocking++;
}

static void ksub_unlink_sub(struct ksub *k, struct sub *s)
{
	list_del(&s->klink);
	s->k = NULL;
	k->nsubs--;
	if (sub_blocking(s))
		k->nblocking--;
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
	k->t = t;
	k->start = start;
	k->end = end;
	k->blocking = blocking;
	k->node.start = start;
	k->node.last = end - 1;
	list_init(&k->subs);
	t->refs++;
	mmn__itree_insert(&t->ksubs, &k->node);
	khash_add(b, k);
	*out = k;
	return 0;
}

struct collect {
	struct ksub **v;
	size_t n, cap;
};

static int collect_ksub(struct itree_node *n, void *ud)
{
	struct collect *c = ud;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		struct ksub **v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = container_of(n, struct ksub, node);
	return 0;
}

/*
 * Put @s on a ksub of its target, coalescing with every ksub its page
 * range overlaps or touches.  Only while the target is quiescent.
 */
static int ksub_attach(struct target *t, struct sub *s)
{
	uint64_t ks = s->start & ~(MMN_PAGE_SIZE - 1);
	uint64_t ke = (s->end + MMN_PAGE_SIZE - 1) & ~(MMN_PAGE_SIZE - 1);
	struct collect col = {0};
	bool blocking = sub_blocking(s), reaped = false;
	struct ksub *k;
	int r;

	r = mmn__itree_query(&t->ksubs, ks ? ks - 1 : 0, ke, collect_ksub, &col);
	if (r < 0)
		goto out;
	if (col.n == 1 && col.v[0]->start <= ks && col.v[0]->end >= ke) {
		k = col.v[0];
		goto link;
	}
	for (size_t i = 0; i < col.n; i++) {
		if (col.v[i]->start < ks)
			ks = col.v[i]->start;
		if (col.v[i]->end > ke)
			ke = col.v[i]->end;
		/* The blocking subs of a reaped ksub no longer hold the kernel. */
		if (col.v[i]->reaped)
			reaped = true;
		else
			blocking |= col.v[i]->nblocking > 0;
	}
	reaped &= !blocking;
	r = ksub_new(t, ks, ke, blocking, &k);
	if (r < 0)
		goto out;
	k->reaped = reaped;
	/* Move the subs of the ksubs it replaces, then drop those. */
	for (size_t i = 0; i < col.n; i++) {
		struct ksub *old = col.v[i];

		list_for_each_safe(pos, &old->subs)
		{
			struct sub *o = list_entry(pos, struct sub, klink);

			ksub_unlink_sub(old, o);
			ksub_link_sub(k, o);
		}
		ksub_destroy(old);
	}
link:
	ksub_link_sub(k, s);
	ksub_update_blocking(k);
	r = 0;
out:
	free(col.v);
	return r;
}

struct comp {
	uint64_t start, end;
	bool blocking;
	struct ksub *k;
};

struct shrink {
	struct ksub *k;
	struct comp *v;
	size_t n, cap;
	int err;
};

/* Subs of one ksub in start order, merged into page-aligned components. */
static int shrink_visit(struct itree_node *n, void *ud)
{
	struct shrink *sh = ud;
	struct sub *s = container_of(n, struct sub, node);
	uint64_t ps = s->start & ~(MMN_PAGE_SIZE - 1);
	uint64_t pe = (s->end + MMN_PAGE_SIZE - 1) & ~(MMN_PAGE_SIZE - 1);

	if (s->k != sh->k)
		return 0;
	if (sh->n && ps <= sh->v[sh->n - 1].end) {
		struct comp *c = &sh->v[sh->n - 1];

		if (pe > c->end)
			c->end = pe;
		c->blocking |= sub_blocking(s);
		return 0;
	}
	if (sh->n == sh->cap) {
		size_t cap = sh->cap ? sh->cap * 2 : 4;
		struct comp *v = realloc(sh->v, cap * sizeof(*v));

		if (!v)
			return sh->err = -ENOMEM;
		sh->v = v;
		sh->cap = cap;
	}
	sh->v[sh->n++] = (struct comp){.start = ps, .end = pe, .blocking = sub_blocking(s)};
	return 0;
}

/*
 * A sub left @k: if the rest no longer spans it (a hole, or a shorter
 * extent), replace it by one ksub per remaining component, added before the
 * old one goes.  Only at quiescence.  On any failure @k simply stays as it
 * is: too wide is harmless (events nobody receives are acked at once).
 */
static void ksub_shrink(struct ksub *k)
{
	struct target *t = k->t;
	struct shrink sh = {.k = k};
	size_t made = 0;

	mmn__itree_query(&t->subs, k->start, k->end - 1, shrink_visit, &sh);
	if (sh.err || !sh.n || (sh.n == 1 && sh.v[0].start == k->start && sh.v[0].end == k->end))
		goto keep;
	for (; made < sh.n; made++) {
		if (ksub_new(t, sh.v[made].start, sh.v[made].end, sh.v[made].blocking && !k->reaped,
			     &sh.v[made].k) < 0)
			goto undo;
		sh.v[made].k->reaped = k->reaped;
	}
	list_for_each_safe(pos, &k->subs)
	{
		struct sub *s = list_entry(pos, struct sub, klink);

		for (size_t i = 0; i < sh.n; i++) {
			if (s->start >= sh.v[i].start && s->end <= sh.v[i].end) {
				ksub_unlink_sub(k, s);
				ksub_link_sub(sh.v[i].k, s);
				break;
			}
		}
	}
	free(sh.v);
	ksub_destroy(k);
	return;
undo:
	while (made--)
		ksub_destroy(sh.v[made].k);
keep:
	free(sh.v);
	ksub_update_blocking(k);
}

/* Take @s out of the index and its ksub (dropping the ksub if it was the last) and free it. */
static void sub_finalize(struct sub *s)
{
	struct target *t = s->t;

	if (s->indexed) {
		struct ksub *k = s->k;

		mmn__itree_remove(&t->subs, &s->node);
		s->indexed = false;
		ksub_unlink_sub(k, s);
		if (!k->nsubs)
			ksub_destroy(k);
		else
			ksub_shrink(k);
	}
	t->b->stats.subscriptions--;
	free(s);
	mmn__target_put(t);
}

/*
 * uffd source: the client's range is registered with its connection's uffd
 * by mmnd (the client keeps no descriptor of it) before SubscribeReply, and
 * unregistered when the sub leaves the client (where no other sub of the
 * connection covers it).  A dropped client's uffd is closed instead.
 */
static int sub_uffd_register(struct client *c, const struct target *t, const struct sub_req *r)
{
	const struct source_ops *ops = c->b->src->ops;

	if (!ops->uffd_register || t->pid != c->pid)
		return 0;
	return ops->uffd_register(c->b->src, c->pid, c->id, r->start, r->end, !r->resubscribe);
}

static void sub_uffd_unregister(struct client *c, const struct sub *s)
{
	struct broker *b = c->b;

	if (b->src->ops->uffd_unregister && s->t->pid == c->pid && !c->dropping && !b->source_lost)
		b->src->ops->uffd_unregister(b->src, c->pid, c->id, s->start, s->end);
}

/* Detach @s from its client: free its slot, unlink, answer a pending Unsubscribe. */
static void sub_detach_client(struct sub *s)
{
	struct client *c = s->c;

	if (!c)
		return;
	sub_uffd_unregister(c, s);
	mmn__seqpage_free(c, s->slot);
	list_del(&s->clink);
	c->nsubs--;
	mmn__client_uid_subs(c, -1);
	s->c = NULL;
	if (s->unsub_reply) {
		s->unsub_reply = false;
		c->b->sink.send_status(c, s->unsub_request_id, 0);
	}
}

static void reply_subscribed(struct client *c, uint64_t request_id, const struct sub *s)
{
	c->b->sink.send_subscribed(c, request_id, s->id, s->slot, s->gen, s->timeout_ms);
}

/* Create the subscription now (target quiescent).  Consumes the target reference. */
static void sub_create(struct target *t, struct client *c, uint64_t request_id, const struct sub_req *r)
{
	struct broker *b = t->b;
	struct sub *s;
	int err;

	s = calloc(1, sizeof(*s));
	if (!s) {
		err = -ENOMEM;
		goto fail;
	}
	err = mmn__seqpage_alloc(c, &s->slot, &s->gen);
	if (err < 0)
		goto fail;
	s->id = ++b->next_sub_id;
	s->c = c;
	s->t = t;
	s->start = r->start;
	s->end = r->end;
	s->flags = r->flags;
	s->mask = r->mask;
	s->timeout_ms = r->timeout_ms;
	s->state = SUB_LIVE;
	list_init(&s->klink);
	list_init(&s->d.link);
	s->d.kind = DEF_REMOVE;
	/* Room for it in every event first: fan-out must not allocate. */
	err = b->stats.subscriptions >= UINT32_MAX ? -ENOMEM
						   : mmn__recips_reserve(b, (uint32_t)b->stats.subscriptions + 1);
	if (err < 0) {
		mmn__seqpage_free(c, s->slot);
		goto fail;
	}
	err = sub_uffd_register(c, t, r);
	if (err < 0) {
		mmn__seqpage_free(c, s->slot);
		goto fail;
	}
	err = ksub_attach(t, s);
	if (err < 0) {
		sub_uffd_unregister(c, s);
		mmn__seqpage_free(c, s->slot);
		goto fail;
	}
	s->node.start = s->start;
	s->node.last = s->end - 1;
	mmn__itree_insert(&t->subs, &s->node);
	s->indexed = true;
	list_add_tail(&c->subs, &s->clink);
	c->nsubs++;
	mmn__client_uid_subs(c, 1);
	b->stats.subscriptions++;
	reply_subscribed(c, request_id, s);
	return;
fail:
	free(s);
	mmn__target_put(t);
	c->b->sink.send_error(c, request_id, err, "subscription failed");
}

/*
 * Subscribe @c to @r on @t (a validated and authorised request; takes over
 * the caller's reference on @t): now, or when the last invalidation in
 * flight on @t ends.  The reply is sent then.
 */
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
	list_add_tail(&c->pending, &p->clink);
	mmn__client_uid_subs(c, 1);
	mmn__sub_defer(t, &p->d);
}

void mmn__pending_sub_cancel(struct pending_sub *p)
{
	list_del(&p->clink);
	mmn__client_uid_subs(p->c, -1);
	p->c = NULL;
}

int mmn__sub_unsubscribe(struct client *c, uint64_t request_id, uint64_t sub_id)
{
	struct sub *s = mmn__client_find_sub(c, sub_id);

	if (!s || s->state != SUB_LIVE)
		return c->b->sink.send_error(c, request_id, -ENOENT, "no such subscription");
	if (s->t->inflight) {
		/* Its pending acks are moot; it still gets InvalidateEnd (pairing). */
		s->state = SUB_DYING;
		s->unsub_request_id = request_id;
		s->unsub_reply = true;
		mmn__recips_close_sub(c->b, s, true);
		mmn__sub_defer(s->t, &s->d);
		return 0;
	}
	sub_detach_client(s);
	sub_finalize(s);
	return c->b->sink.send_status(c, request_id, 0);
}

void mmn__sub_kill(struct sub *s)
{
	if (s->state == SUB_DEAD)
		return;
	mmn__recips_close_sub(s->t->b, s, false);
	s->unsub_reply = false;
	sub_detach_client(s);
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

		if (p->c) {
			list_del(&p->clink);
			mmn__client_uid_subs(p->c, -1);
			sub_create(t, p->c, p->request_id, &p->req);
		} else {
			mmn__target_put(t);
		}
		free(p);
	} else {
		struct sub *s = container_of(d, struct sub, d);

		sub_detach_client(s);
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
void mmn__ksub_release(struct ksub *k, bool released, uint32_t reason)
{
	struct target *t = k->t;

	t->refs++;
	list_for_each_safe(pos, &k->subs)
	{
		struct sub *s = list_entry(pos, struct sub, klink);

		if (s->c && s->state != SUB_DEAD)
			send_release(s, released, reason);
		if (s->state != SUB_DEAD) {
			mmn__recips_close_sub(t->b, s, false);
			sub_detach_client(s);
		}
		if (list_linked(&s->d.link))
			list_del(&s->d.link);
		s->state = SUB_DEAD;
		mmn__itree_remove(&t->subs, &s->node);
		s->indexed = false;
		ksub_unlink_sub(k, s);
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
	sk->send_invalidate_end(s->c, s->id, 0, seq);
}

void mmn__ksub_resync(struct ksub *k)
{
	struct broker *b = k->t->b;

	list_for_each(pos, &k->subs)
		mmn__sub_resync(list_entry(pos, struct sub, klink));
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
