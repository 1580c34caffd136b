/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fan-out: one source invalidation in flight (struct event), from START to
 * END.
 *
 * On START every live subscription that overlaps a listed ksub's clipped
 * range and whose event mask matches becomes a recipient.  Their sequence
 * slots go odd first, then every recipient is sent its Invalidate in one
 * pass (blocking clients are notified at once, not one after another).  A
 * blocking recipient of an event that needs an ack owes an Ack before its
 * own deadline (its subscription's timeout, never above the global cap);
 * one uv_timer per event fires at the earliest deadline and evicts whoever
 * missed it (Revoked{timeout}: the subscription is gone).  When no blocking
 * recipient is left owing, the source is acked.  Non-blocking recipients
 * never owe anything.
 *
 * A non-blockable invalidation the source refused (the OOM reaper, kept
 * back by a ksub's BLOCKING flag) is told to every recipient: non-blocking
 * ones as usual, blocking ones with needs_ack and their normal deadline,
 * since the victim is dying and they must drop their device mappings.  The
 * source is never acked for it (nobody waits in the kernel).  Once every
 * blocking recipient acked or was evicted, BLOCKING is cleared on the
 * listed ksubs for good (struct ksub, reaped) so the reaper's retry
 * succeeds.  The kernel does not wait, so its END usually comes first: the
 * recipients that owe nothing get InvalidateEnd then, but the event stays
 * in flight for the others (slots odd, InvalidateEnd held back) until that
 * point, and is ended right after.  Pairing is as for any event.
 *
 * On END every recipient whose subscription still exists gets
 * InvalidateEnd; those whose subscription went were told Revoked or Release
 * instead, so each Invalidate is paired exactly once.  An END also ends the
 * earlier events of its target when the source says that it may
 * (end_earlier); a missing END is otherwise ended by a counted last-resort
 * timer (timer_cb).
 *
 * Events and their recipient arrays are pooled, and every array is grown
 * to hold one recipient per existing subscription before a subscription is
 * linked (mmn__recips_reserve): neither fan-out nor the ack path allocates.
 * Should a recipient still not fit (a new event when memory is short), no
 * overlapping subscription may be skipped: every sub of the listed ksubs is
 * resynchronised instead (an Invalidate{RESYNC} and InvalidateEnd pair, as
 * for a source's REVOKED) and the event is not kept.
 */

#include "engine/fanout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "engine/seqpage-slots.h"
#include "engine/itree.h"
#include "engine/list.h"
#include "engine/recips.h"
#include "engine/sub.h"
#include "engine/target.h"

static struct event *event_find(struct broker *b, uint64_t id)
{
	struct idmap_node *n = mmn__idmap_find(&b->event_ids, id);

	return n ? container_of(n, struct event, idn) : NULL;
}

static void timer_cb(uv_timer_t *h);

static struct event *event_get(struct broker *b)
{
	struct event *e;

	if (!list_empty(&b->event_pool)) {
		e = list_entry(b->event_pool.next, struct event, link);
		list_del(&e->link);
	} else {
		e = calloc(1, sizeof(*e));
		if (!e)
			return NULL;
		/* Room in event_ids for every event there is: linking one never allocates. */
		if (mmn__recips_grow(e, b->recip_reserve) < 0 ||
		    mmn__idmap_reserve(&b->event_ids, (size_t)b->nevents + 1) < 0) {
			mmn__recips_free(e);
			free(e);
			return NULL;
		}
		e->b = b;
		uv_timer_init(b->loop, &e->timer);
		e->timer_cb = timer_cb;
		e->timer.data = e;
		e->timer_inited = true;
		b->handles++;
		b->nevents++;
		list_init(&e->alink);
	}
	e->nrecips = 0;
	e->hashed = false;
	e->npending = 0;
	e->nksubs = 0;
	e->acked = false;
	e->end_seen = false;
	e->t = NULL;
	return e;
}

static void event_put(struct broker *b, struct event *e)
{
	mmn__recips_unindex(e);
	uv_timer_stop(&e->timer);
	if (list_linked(&e->alink))
		list_del(&e->alink);
	list_add_tail(&b->event_pool, &e->link);
}

/*
 * Remember a ksub listed in a refused event.  Pooled like the recipients.
 * If it cannot be remembered its BLOCKING stays set: the kernel's next
 * retry is refused again and asks again (safe, only slower).
 */
static void ksub_note(struct event *e, uint32_t id)
{
	for (uint32_t i = 0; i < e->nksubs; i++)
		if (e->ksubs[i] == id)
			return;
	if (e->nksubs == e->kcap) {
		uint32_t cap = e->kcap ? e->kcap * 2 : 8;
		uint32_t *v = realloc(e->ksubs, cap * sizeof(*v));

		if (!v)
			return;
		e->ksubs = v;
		e->kcap = cap;
	}
	e->ksubs[e->nksubs++] = id;
}

static void queue_direct_ack(struct broker *b, uint64_t event_id)
{
	/* An event nobody receives: ack at once, it never waits on a client. */
	if (!b->source_lost)
		b->src->ops->ack(b->src, event_id);
}

static void event_end(struct broker *b, struct event *e);

/*
 * Every blocking recipient of refused event @e acked or was evicted: they
 * dropped their mappings of the dying target, so let the kernel's retry
 * through (no ack: the source does not wait for one), then end the event
 * if its END came meanwhile.  Looks ksubs up by id and only calls the
 * source: nothing here allocates.
 */
static void refused_done(struct broker *b, struct event *e)
{
	for (uint32_t i = 0; i < e->nksubs; i++) {
		struct ksub *k = mmn__ksub_find(b, e->ksubs[i]);

		/* Released meanwhile: the id may be another target's now. */
		if (k && k->t == e->t)
			mmn__ksub_reaped(k);
	}
	e->nksubs = 0;
	if (e->end_seen)
		event_end(b, e);
}

void mmn__fanout_flush_acks(struct broker *b)
{
	while (!list_empty(&b->ack_queue)) {
		struct event *e = list_entry(b->ack_queue.next, struct event, alink);
		uint64_t id = e->id;

		list_del(&e->alink);
		if (b->has_obs && b->obs.invalidation) {
			struct admin_invalidation inv = {
				.target_pid = e->t ? e->t->pid : 0,
				.event = e->type,
				.blockable = e->blockable,
				.clients = e->nrecips,
				.latency_us =
					e->needs_ack || e->refused ? (uv_hrtime() - e->begin_ns) / 1000 : 0,
			};

			inv.start = e->range_start;
			inv.end = e->range_end;
			if (inv.end <= inv.start && e->nrecips) {
				inv.start = e->recips[0].start;
				inv.end = e->recips[e->nrecips - 1].end;
			}
			b->obs.invalidation(b->obs.ud, &inv);
		}
		if (e->needs_ack && !b->source_lost)
			b->src->ops->ack(b->src, id);
		if (e->refused)
			refused_done(b, e);
	}
}

struct gather {
	struct event *e;
	uint64_t start, end; /* the invalidated range (within the listed ksubs) */
	int err;
};

static int gather_sub(struct itree_node *n, void *ud)
{
	struct gather *g = ud;
	struct sub *s = container_of(n, struct sub, node);
	bool in_range = s->start < g->end && s->end > g->start;
	struct recip *r;

	if (s->state != SUB_LIVE || !s->c || s->c->dropping)
		return 0;
	/* Refused: a blocking sub anywhere on the listed ksubs is asked too (see fanout_gather). */
	if (!in_range && !(g->e->refused && s->flags == MMN__V1__SUB_FLAG__SUB_BLOCKING))
		return 0;
	if (in_range && !(s->mask & (UINT64_C(1) << (g->e->type & 63))))
		return 0;
	r = mmn__recips_add(g->e);
	if (!r) {
		g->err = -ENOMEM;
		return -ENOMEM;
	}
	r->sub = s;
	r->sub_id = s->id;
	r->c = s->c;
	r->client_id = s->c->id;
	r->next_of_client = RECIP_NONE;
	r->start = in_range && s->start < g->start ? g->start : s->start;
	r->end = in_range && s->end > g->end ? g->end : s->end;
	r->state = RECIP_NOTIFIED;
	r->deadline = 0;
	r->suppressed = false;
	return 0;
}

static void send_invalidate(struct event *e, struct recip *r, uint64_t seq)
{
	bool needs_ack = r->state == RECIP_PENDING;
	bool nonblocking = r->sub->flags == MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	int ret;

	ret = e->b->sink.send_invalidate(r->c, r->sub, r->sub_id, e->id, r->start, r->end, e->type,
					 e->blockable, needs_ack, seq,
					 needs_ack ? r->sub->timeout_ms : 0, nonblocking);
	if (nonblocking)
		r->suppressed = ret == 1;
}

static void arm_timer(struct event *e)
{
	uint64_t now = uv_now(e->b->loop), min = UINT64_MAX;

	for (uint32_t i = 0; i < e->nrecips; i++)
		if (e->recips[i].state == RECIP_PENDING && e->recips[i].deadline < min)
			min = e->recips[i].deadline;
	if (min == UINT64_MAX)
		return;
	uv_timer_start(&e->timer, timer_cb, min > now ? min - now : 0, 0);
}

/*
 * No room to list the recipients of @ev: rather than skip any, resync every
 * sub of its listed ksubs (their slots move on, each gets a pair), then let
 * the source go ahead as if they had all acked.  A refused event is not
 * acked and its BLOCKING stays: the reaper's retry asks again.
 */
static void fanout_nomem(struct broker *b, const struct source_event *ev)
{
	if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log(LOG_WARNING, NULL,
			 "Out of memory fanning out event %" PRIu64 "; resynchronising its subscriptions",
			 ev->event_id);
	for (size_t i = 0; i < ev->nsubs; i++) {
		struct ksub *k = mmn__ksub_find(b, ev->subs[i].ksub_id);

		if (k)
			mmn__ksub_resync_subs(k);
	}
	if (ev->needs_ack)
		queue_direct_ack(b, ev->event_id);
}

/*
 * Add to @e the recipients of the ksubs @ev lists (one target only).  The
 * source lists every ksub the one invalidated range overlaps, each with the
 * range clipped to it; the union of those is that range within the watched
 * granules, and every sub lies inside its ksubs, so one query over the
 * union finds each recipient once, however many ksubs it spans.
 *
 * A refused (non-blockable, OOM) event is different: the kernel refuses it
 * for a whole ksub while the ksub is BLOCKING, and clearing BLOCKING lets
 * the reaper zap everything under the ksub, which is granule wide and may
 * hold blocking subs outside this range (the reaper refuses VMA by VMA).
 * So every blocking sub on the listed ksubs is asked to drop its mappings
 * (its whole range: its target is being OOM-killed) and BLOCKING goes only
 * once all of them acked or were evicted (refused_done).  0 or -ENOMEM.
 */
static int fanout_gather(struct broker *b, struct event *e, const struct source_event *ev)
{
	struct gather g = {.e = e, .start = UINT64_MAX, .end = 0};
	uint64_t qs = UINT64_MAX, qe = 0;

	for (size_t i = 0; i < ev->nsubs; i++) {
		const struct source_event_sub *es = &ev->subs[i];
		struct ksub *k = mmn__ksub_find(b, es->ksub_id);
		uint64_t ks, ke;

		if (!k || es->end <= es->start)
			continue;
		if (e->t && k->t != e->t)
			continue; /* one event is one mm: ignore a foreign ksub */
		e->t = k->t;
		if (e->refused)
			ksub_note(e, k->id);
		g.start = es->start < g.start ? es->start : g.start;
		g.end = es->end > g.end ? es->end : g.end;
		ks = e->refused ? k->start : es->start;
		ke = e->refused ? k->end : es->end;
		qs = ks < qs ? ks : qs;
		qe = ke > qe ? ke : qe;
	}
	if (!e->t)
		return 0;
	mmn__itree_query(&e->t->subs, qs, qe - 1, gather_sub, &g);
	return g.err;
}

/* Recipient @i of @e was sent its Invalidate: link it after its client's previous one. */
static void chain_link(struct event *e, uint32_t i)
{
	struct client *c = e->recips[i].c;

	if (c->chain_gen == e->b->fanout_gen && c->chain_last < i)
		e->recips[c->chain_last].next_of_client = i;
	c->chain_gen = e->b->fanout_gen;
	c->chain_last = i;
}

/* @e is in flight: turn its recipients' slots odd, send, arm the deadlines. */
static void fanout_notify(struct broker *b, struct event *e)
{
	uint64_t now = uv_now(b->loop);

	b->fanout_gen++; /* a new chain of recipients per client (chain_link) */
	/*
	 * One pass: each recipient's slot turns odd just before its own
	 * Invalidate is built, so a client's first packet leaves (send.c keeps
	 * it short) while the rest are built, and the client works meanwhile.
	 * Acks are read, and the source acked, only after this callback
	 * returns: every slot is odd before any of that.  (A client dropped by
	 * a failed send is only queued for reaping: its recipients stay.)
	 */
	for (uint32_t i = 0; i < e->nrecips; i++) {
		struct recip *r = &e->recips[i];
		struct sub *s = r->sub;

		if (s->inflight++ == 0)
			mmn__seqpage_begin(s->c, s->slot);
		/* Refused: the kernel does not wait, but the reaper's retry does. */
		if ((e->needs_ack || e->refused) && s->flags == MMN__V1__SUB_FLAG__SUB_BLOCKING) {
			r->state = RECIP_PENDING;
			r->deadline = now + s->timeout_ms;
			e->npending++;
			s->c->pending_acks++;
		}
		send_invalidate(e, r, mmn__seqpage_value(r->c, s->slot));
		if (!r->suppressed)
			chain_link(e, i);
	}
	if (e->npending)
		arm_timer(e);
	else
		mmn__recips_queue_ack(e);
}

static void fanout_start(struct broker *b, const struct source_event *ev)
{
	struct event *e;

	if (b->draining || !ev->nsubs) {
		if (ev->needs_ack)
			queue_direct_ack(b, ev->event_id);
		return;
	}
	e = event_get(b);
	if (!e) {
		fanout_nomem(b, ev);
		return;
	}
	e->id = ev->event_id;
	e->type = ev->event;
	e->blockable = ev->blockable;
	e->needs_ack = ev->needs_ack;
	e->refused = ev->refused;
	e->begin_ns = uv_hrtime();
	e->range_start = ev->range_start;
	e->range_end = ev->range_end;
	if (fanout_gather(b, e, ev) < 0) {
		/* Nothing was sent or begun yet: drop the event, resync them all. */
		event_put(b, e);
		fanout_nomem(b, ev);
		return;
	}
	if (!e->t) {
		/* Nothing of ours is touched (a ksub that just went away). */
		event_put(b, e);
		if (ev->needs_ack)
			queue_direct_ack(b, ev->event_id);
		return;
	}
	mmn__recips_index(e);
	list_add_tail(&b->events, &e->link);
	e->idn.id = e->id;
	mmn__idmap_add(&b->event_ids, &e->idn);
	e->t->inflight++;
	e->t->refs++;
	b->stats.invalidations++;
	if (e->refused)
		b->stats.nonblock_refusals++;

	fanout_notify(b, e);
}

/* Send @r its InvalidateEnd (unless coalesced away) and move its slot on. */
static void recip_end(struct event *e, struct recip *r)
{
	struct sub *s = r->sub;

	if (s->c) {
		uint64_t seq = --s->inflight == 0 ? mmn__seqpage_end(s->c, s->slot)
						  : mmn__seqpage_value(s->c, s->slot);
		/*
		 * A coalesced Invalidate is paired by its resync pair; one the
		 * client got (or has queued) is always paired, unless the sub
		 * asked for no ends (Subscribe.no_end).
		 */
		if (!r->suppressed && !s->no_end)
			e->b->sink.send_invalidate_end(s->c, r->sub_id, e->id, seq);
	} else if (s->inflight) {
		s->inflight--;
	}
}

/*
 * The source's END for @e: pair every recipient's Invalidate now; or, for a
 * refused event whose blocking recipients still hold mappings, end those
 * that owe nothing and keep it in flight for the others.
 */
static void end_one(struct broker *b, struct event *e)
{
	if (e->refused && (e->npending || list_linked(&e->alink))) {
		/*
		 * Blocking recipients still hold mappings: the event stays in
		 * flight for them until they are done (refused_done).  Whoever
		 * owes nothing is ended now, non-blocking clients never wait.
		 */
		e->end_seen = true;
		for (uint32_t i = 0; i < e->nrecips; i++) {
			struct recip *r = &e->recips[i];

			if (r->state != RECIP_NOTIFIED || !r->sub)
				continue;
			recip_end(e, r);
			r->state = RECIP_CLOSED;
			r->sub = NULL;
			r->c = NULL;
		}
		return;
	}
	event_end(b, e);
}

/*
 * A lost END is found at the next END of the same target, for a source
 * whose ENDs say so (caps.end_covers_earlier: mmn.ko).  The module sends
 * the END of event E once mmu_interval_read_begin() returned, i.e. once the
 * invalidation period of the mm that contained E is over; an earlier event
 * of that mm (lower id: the module takes ids inside the invalidate callback)
 * either ended before E began or ran in that same period.  So every earlier
 * event of the target that is still open is over in the kernel: its END is
 * late (the module's workers may send ENDs in another order) or was lost on
 * our side (a datagram we could not read or keep: see source/kmod.c).  It
 * is ended now, as its END would have; a late END then finds nothing.
 * A target is one process, whose mm changes only at exec: the RELEASE of
 * every ksub of the old mm closes their recipients first.  Ends oldest
 * first; a refused event that keeps blocking recipients is only marked
 * (end_seen), as its END would have, so the loop ends.
 */
static void end_earlier(struct broker *b, struct event *e)
{
	if (!b->src || !b->src->caps.end_covers_earlier)
		return;
	for (;;) {
		struct event *o = NULL;

		list_for_each(pos, &b->events)
		{
			struct event *x = list_entry(pos, struct event, link);

			if (x != e && x->t == e->t && x->id < e->id && !x->end_seen && (!o || x->id < o->id))
				o = x;
		}
		if (!o)
			return;
		b->stats.implied_ends++;
		end_one(b, o);
	}
}

/* The source's END for @event_id. */
static void fanout_end(struct broker *b, uint64_t event_id)
{
	struct event *e = event_find(b, event_id);

	if (!e)
		return;
	end_earlier(b, e);
	end_one(b, e);
}

/* Pair every recipient's Invalidate, free @e, let its target quiesce. */
static void event_end(struct broker *b, struct event *e)
{
	struct target *t;

	for (uint32_t i = 0; i < e->nrecips; i++) {
		struct recip *r = &e->recips[i];

		if (r->state == RECIP_CLOSED || !r->sub)
			continue;
		/* The kernel went ahead without the ack (its own timeout): nothing owed now. */
		mmn__recips_settle(e, r);
		recip_end(e, r);
	}
	/* The source does not wait any more: an ack now would be stale. */
	e->acked = true;
	t = e->t;
	list_del(&e->link);
	mmn__idmap_del(&b->event_ids, &e->idn);
	event_put(b, e);
	t->inflight--;
	mmn__sub_quiesce(t);
	mmn__target_put(t);
}

static void evict(struct event *e, struct recip *r)
{
	struct broker *b = e->b;
	struct sub *s = r->sub;
	struct client *c = r->c;

	b->sink.send_revoked(c, r->sub_id, MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT, e->id);
	b->stats.timeouts++;
	b->stats.evictions++;
	c->evictions++;
	if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log_fields(LOG_WARNING, MMN_MSGID_CLIENT_EVICT,
			 &(struct log_fields){.has = LOG_F_CLIENT | LOG_F_SUB | LOG_F_TARGET | LOG_F_EVENT,
					      .client_pid = c->pid, .client_uid = c->uid, .sub_id = s->id,
					      .target_pid = e->t->pid, .event = e->id},
			 "Client %" PRIu64 " (pid %d, %s) missed its %u ms ack deadline for event %" PRIu64
			 ", evicted from subscription %" PRIu64,
			 c->id, (int)c->pid, c->name[0] ? c->name : "unnamed", s->timeout_ms, e->id, s->id);
	if (b->has_obs && b->obs.client_evicted)
		b->obs.client_evicted(b->obs.ud, c->id, "timeout");
	mmn__sub_kill(s);
}

static void timer_cb(uv_timer_t *h)
{
	struct event *e = h->data;
	struct broker *b = e->b;
	uint64_t now = uv_now(b->loop);

	/*
	 * Acked, but the source never said END.  The last resort, counted
	 * (end_timeouts): mmn.ko retries an END until it is queued, so only a
	 * loss on mmnd's side (an unreadable datagram, a backlog entry that
	 * could not be allocated) with no later END of the same target (which
	 * ends it at once: end_earlier) or a source bug comes here; it must
	 * not leave the target's deferred subscribe/unsubscribe waiting forever.
	 */
	if (e->acked && !e->npending) {
		b->stats.end_timeouts++;
		mmn__log(LOG_WARNING, NULL,
			 "Event %" PRIu64 " of the %s source got no END within %u ms; ending it", e->id,
			 b->src ? b->src->caps.name : "lost", b->opt.end_timeout_ms);
		event_end(b, e);
		b->settle(b);
		return;
	}

	/*
	 * Timers run before I/O in a loop iteration: an ack already queued on
	 * the socket of a client about to be evicted is read first.
	 */
	for (uint32_t i = 0; i < e->nrecips; i++) {
		struct recip *r = &e->recips[i];

		if (r->state == RECIP_PENDING && r->deadline <= now)
			b->sink.read_now(r->c);
	}
	for (uint32_t i = 0; i < e->nrecips; i++) {
		struct recip *r = &e->recips[i];

		if (r->state == RECIP_PENDING && r->deadline <= now)
			evict(e, r);
	}
	if (e->npending)
		arm_timer(e);
	b->settle(b);
}

int mmn__fanout_ack(struct client *c, uint64_t sub_id, uint64_t event_id)
{
	struct event *e = event_find(c->b, event_id);
	struct recip *r;

	if (!e)
		return -ENOENT;
	/* O(1): indexed by sub_id (struct event), no scan of every recipient. */
	r = mmn__recips_find(e, sub_id);
	if (!r || r->c != c)
		return -ENOENT;
	if (r->state == RECIP_PENDING) {
		c->b->stats.blocking_acks++;
		mmn__hist_add(&c->ack_latency, uv_hrtime() - e->begin_ns);
		mmn__recips_settle(e, r);
	}
	return 0;
}

int mmn__fanout_ack_run(struct client *c, uint64_t sub_id, uint64_t event_id, uint32_t n)
{
	struct event *e = event_find(c->b, event_id);
	struct recip *r;
	uint64_t latency;
	uint32_t i;

	if (!e)
		return -ENOENT;
	r = mmn__recips_find(e, sub_id);
	if (!r || r->client_id != c->id)
		return -ENOENT;
	latency = uv_hrtime() - e->begin_ns; /* one reading for the run: its acks came together */
	/* The chain holds only @c's recipients: n steps, each O(1). */
	for (i = (uint32_t)(r - e->recips); n-- > 0 && i != RECIP_NONE; i = e->recips[i].next_of_client) {
		r = &e->recips[i];
		if (r->state == RECIP_PENDING && r->c == c) {
			c->b->stats.blocking_acks++;
			mmn__hist_add(&c->ack_latency, latency);
			mmn__recips_settle(e, r);
		}
	}
	return 0;
}

static void fanout_lost(struct broker *b, int err)
{
	mmn__log(LOG_ERR, MMN_MSGID_SOURCE_LOST,
		 "Event source %s failed: %s; every subscription is revoked", b->src->caps.name,
		 strerror(err < 0 ? -err : err));
	b->source_lost = true;
	/* Close every pairing with Revoked{source gone}, then drop the events. */
	for (;;) {
		struct ksub *k = NULL;

		list_for_each(pos, &b->targets)
		{
			struct target *t = list_entry(pos, struct target, link);

			if (t->ksubs.root) {
				k = container_of(t->ksubs.root, struct ksub, node);
				break;
			}
		}
		if (!k)
			break;
		mmn__ksub_release(k, false, MMN__V1__REVOKE_REASON__REVOKE_SOURCE_GONE);
	}
	while (!list_empty(&b->events))
		event_end(b, list_entry(b->events.next, struct event, link));
	if (b->has_obs && b->obs.source_changed)
		b->obs.source_changed(b->obs.ud, "none");
}

void mmn__fanout_event(struct broker *b, const struct source_event *ev)
{
	switch (ev->kind) {
	case SOURCE_INVALIDATE:
		fanout_start(b, ev);
		break;
	case SOURCE_INVALIDATE_END:
		fanout_end(b, ev->event_id);
		break;
	case SOURCE_RELEASE:
	case SOURCE_REVOKED:
		for (size_t i = 0; i < ev->nsubs; i++) {
			struct ksub *k = mmn__ksub_find(b, ev->subs[i].ksub_id);

			if (!k)
				continue;
			if (ev->kind == SOURCE_RELEASE)
				mmn__ksub_release(k, true, 0);
			else
				mmn__ksub_resync(k);
		}
		break;
	case SOURCE_LOST:
		if (!b->source_lost)
			fanout_lost(b, (int)ev->reason);
		break;
	}
}

void mmn__fanout_ack_all(struct broker *b)
{
	list_for_each(pos, &b->events)
	{
		struct event *e = list_entry(pos, struct event, link);

		for (uint32_t i = 0; i < e->nrecips; i++)
			mmn__recips_settle(e, &e->recips[i]);
		mmn__recips_queue_ack(e);
	}
	mmn__fanout_flush_acks(b);
}

static void event_close_cb(uv_handle_t *h)
{
	struct event *e = h->data;
	struct broker *b = e->b;

	mmn__recips_free(e);
	free(e->ksubs);
	free(e);
	mmn__broker_handle_closed(b);
}

void mmn__fanout_free_pool(struct broker *b)
{
	while (!list_empty(&b->events)) {
		struct event *e = list_entry(b->events.next, struct event, link);

		e->t->inflight--;
		list_del(&e->link);
		mmn__idmap_del(&b->event_ids, &e->idn);
		mmn__target_put(e->t);
		event_put(b, e);
	}
	while (!list_empty(&b->event_pool)) {
		struct event *e = list_entry(b->event_pool.next, struct event, link);

		list_del(&e->link);
		uv_close((uv_handle_t *)&e->timer, event_close_cb);
	}
}
