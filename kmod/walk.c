// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: the invalidate callback: one walk of the core mm over the
 * subscriptions of an invalidation, and what its first callback reports.
 *
 * One invalidation, one event.  The core mm walks the interval tree of an
 * mm once per invalidation and calls .invalidate for every overlapping
 * subscription, one after the other on the invalidating thread (the walk).
 * The first callback of a walk (the gatherer) reports every LIVE
 * subscription of the same mm that overlaps the range and that the walk
 * visits after it (the walk goes by increasing start; equal starts are not
 * gathered) in one INVALIDATE with one seq and waits once; it marks them
 * covered by setting the bit of a walk slot (struct mmn_walk, keyed by
 * thread, range pointer, cur_seq, start, end and event) in their cover
 * mask, and their own callbacks in the same walk consume the bit and return
 * at once.
 *
 * The rule is sound because the interval tree cannot change while a walk
 * runs (cur_seq is odd: inserts and removes are deferred until it turns
 * even), so every subscription that is in the tree and overlaps the range
 * gets its callback in this walk.  A subscription whose insert was deferred
 * is in our list but not yet in the tree: it is only gathered once it is
 * "armed", i.e. known to be in the tree (its notifier's rb node was linked
 * when insert returned, or it has had a callback).  A callback that finds
 * its thread's slot describing another walk clears it (walks of one thread
 * never interleave), and so does the gatherer's own callback coming again
 * (the previous walk was cut short by another notifier and is retried with
 * the same range); a walk that we stop (we refuse a non-blockable
 * invalidation) clears its slot before returning false.  A subscription that
 * is not covered always reports itself, so the worst case of any miss is an
 * extra event, never a lost one; and as a gatherer only reaches forward,
 * never back to a subscription the walk already visited (which reported
 * itself or was covered), no subscription is listed twice for one walk.  A
 * callback that is not covered but finds its walk's slot still waiting for
 * covered callbacks reports only itself.
 *
 * The gatherer's callback goes in three steps: gather (under group->lock:
 * list the subscriptions, decide whether to wait or refuse, register the
 * waiter), send and wait (no lock: the INVALIDATE, then the bounded wait of
 * wait.c), and hand-off (the batch goes to its INVALIDATE_END work, batch.c).
 *
 * Locking: group->lock (spinlock) is the lock of every subscription of that
 * mm and, with mmn_wait_lock nested inside it, the only lock on the
 * invalidate path.  Nothing on that path sleeps or allocates with reclaim,
 * except the bounded wait of a blockable invalidation, taken with no lock.
 *
 * Lost events are never silent.  Every GFP_NOWAIT allocation on the
 * invalidate path may fail; when an event (INVALIDATE, RELEASE) or its
 * REVOKED cannot be allocated, the subscription's prebuilt REVOKED(DESYNC)
 * (sub->lost, see sub.h) is sent instead, which needs no allocation.  Its
 * only failure is a full receive queue, which the daemon sees as ENOBUFS.
 * It is used once per DESYNC period; SET_FLAGS(RESYNCED) re-arms it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/lockdep.h>
#include <linux/minmax.h>
#include <linux/mmu_notifier.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "batch.h"
#include "core.h"
#include "event.h"
#include "sub.h"
#include "wait.h"
#include "walk.h"

/* The seq of the last INVALIDATE; the ACK of a wait names it. */
static atomic64_t mmn_seq = ATOMIC64_INIT(0);

/* ---- walks (group->lock held) ---- */

static u32 walk_bit(struct mmn_group *g, struct mmn_walk *w)
{
	return BIT(w - g->walks);
}

static struct mmn_walk *walk_find(struct mmn_group *g)
{
	int i;

	lockdep_assert_held(&g->lock);
	for (i = 0; i < MMN_WALKS; i++)
		if (g->walks[i].task == current)
			return &g->walks[i];
	return NULL;
}

static bool walk_match(const struct mmn_walk *w,
		       const struct mmu_notifier_range *range,
		       unsigned long cur_seq)
{
	return w->range == range && w->cur_seq == cur_seq &&
	       w->start == range->start && w->end == range->end &&
	       w->event == range->event;
}

static struct mmn_walk *walk_new(struct mmn_group *g, struct mmn_sub *self,
				 const struct mmu_notifier_range *range,
				 unsigned long cur_seq)
{
	int i;

	lockdep_assert_held(&g->lock);
	for (i = 0; i < MMN_WALKS; i++) {
		struct mmn_walk *w = &g->walks[i];

		if (w->task)
			continue;
		w->task = current;
		w->range = range;
		w->cur_seq = cur_seq;
		w->start = range->start;
		w->end = range->end;
		w->event = range->event;
		w->gatherer = self;
		w->pending = 0;
		return w;
	}
	return NULL;
}

static void walk_clear(struct mmn_group *g, struct mmn_walk *w)
{
	u32 bit = walk_bit(g, w);
	struct mmn_sub *s;

	lockdep_assert_held(&g->lock);
	list_for_each_entry(s, &g->subs, node)
		s->cover &= ~bit;
	w->task = NULL;
	w->pending = 0;
}

/* ---- lost events ---- */

/*
 * An event for s could not be allocated (ret, -ENOMEM): send its prebuilt
 * REVOKED(DESYNC) if it still has one.  No allocation here.  s->desync is
 * already set.
 */
static void send_lost(struct mmn_group *g, struct mmn_sub *s, int ret)
{
	struct sk_buff *skb;

	if (ret != -ENOMEM)
		return;
	spin_lock(&g->lock);
	skb = s->lost;
	s->lost = NULL;
	spin_unlock(&g->lock);
	if (skb)
		mmn_ev_send(skb);
}

/* Mark the batch's subscriptions desynchronised and tell the daemon. */
static void desync_batch(struct mmn_group *g, const struct mmn_batch *b,
			 bool blocking_only, u32 reason)
{
	unsigned int i;

	spin_lock(&g->lock);
	for (i = 0; i < b->n; i++) {
		struct mmn_sub *s = b->ent[i].sub;

		if (!blocking_only || (s->flags & MMN_SUB_F_BLOCKING))
			s->desync = true;
	}
	spin_unlock(&g->lock);
	for (i = 0; i < b->n; i++) {
		struct mmn_sub *s = b->ent[i].sub;

		if (!blocking_only || (s->flags & MMN_SUB_F_BLOCKING))
			send_lost(g, s, mmn_ev_revoked(b->ent[i].id, reason,
						       MMN_GFP_ATOMIC));
	}
}

/* No batch could be allocated: nothing can be reported, only DESYNC. */
static bool report_nothing(struct mmn_sub *self, bool blockable)
{
	struct mmn_group *g = self->group;
	bool refused;

	mmn_count(MMN_STATS_A_SEND_FAILS);
	spin_lock(&g->lock);
	self->desync = true;
	refused = !blockable && (self->flags & MMN_SUB_F_BLOCKING);
	spin_unlock(&g->lock);
	if (refused)
		mmn_count(MMN_STATS_A_NONBLOCK_REFUSED);
	send_lost(g, self, mmn_ev_revoked(self->id, MMN_REVOKE_DESYNC,
					  MMN_GFP_ATOMIC));
	return !refused;
}

/* ---- the gatherer's report: gather, send and wait, hand-off ---- */

/* How the gatherer's callback ends, decided under group->lock. */
enum mmn_report_mode {
	MMN_REPORT_SEND,	/* no BLOCKING subscription listed, or no daemon */
	MMN_REPORT_WAIT,	/* blockable: wait for the ACK (wt registered) */
	MMN_REPORT_SELF,	/* the daemon's own thread: never wait on it */
	MMN_REPORT_REFUSE,	/* not blockable but BLOCKING: refuse it */
};

/* One report, on the gatherer's stack. */
struct mmn_report {
	struct mmn_batch *b;
	enum mmn_report_mode mode;
	u32 evflags;		/* MMN_EV_F_* of the INVALIDATE */
	u32 pid;		/* of the anchor, as the daemon gave it */
	u32 timeout;		/* ms: the smallest of the BLOCKING listed */
	struct mmn_waiter wt;	/* registered for MMN_REPORT_WAIT only */
};

static void batch_add(struct mmn_batch *b, struct mmn_sub *s,
		      const struct mmu_notifier_range *range)
{
	struct mmn_batch_ent *e = &b->ent[b->n++];

	e->sub = s;
	e->id = s->id;
	e->start = max(s->start, range->start);
	e->end = min(s->last, range->end - 1) + 1;
}

static bool overlaps(const struct mmn_sub *s,
		     const struct mmu_notifier_range *range)
{
	return s->start <= range->end - 1 && s->last >= range->start;
}

/*
 * List self and, if a walk slot is free, every LIVE, armed subscription the
 * walk visits after self, marking them covered.  group->lock held.  Returns
 * the walk slot, or NULL when none was needed or free.
 */
static struct mmn_walk *gather(struct mmn_batch *b, struct mmn_sub *self,
			       const struct mmu_notifier_range *range,
			       unsigned long cur_seq)
{
	struct mmn_group *g = self->group;
	struct mmn_walk *w = NULL;
	struct mmn_sub *s;

	lockdep_assert_held(&g->lock);
	batch_add(b, self, range);
	if (b->cap > 1)
		w = walk_new(g, self, range, cur_seq);
	if (!w)
		return NULL;
	list_for_each_entry(s, &g->subs, node) {
		if (b->n == b->cap)
			break;
		/* only subscriptions the walk visits after us */
		if (s->start <= self->start || s->state != MMN_SUB_LIVE ||
		    !s->armed || !overlaps(s, range))
			continue;
		s->cover |= walk_bit(g, w);
		w->pending++;
		batch_add(b, s, range);
	}
	if (!w->pending)
		w->task = NULL;
	return w;
}

/*
 * Decide how the report ends and register the waiter if it waits.
 * group->lock held.
 */
static void decide(struct mmn_report *r, struct mmn_group *g,
		   struct mmn_walk *w, bool blockable)
{
	bool blocking = false;
	unsigned int i;

	lockdep_assert_held(&g->lock);
	r->timeout = U32_MAX;
	for (i = 0; i < r->b->n; i++) {
		const struct mmn_sub *s = r->b->ent[i].sub;

		if (s->flags & MMN_SUB_F_BLOCKING) {
			blocking = true;
			r->timeout = min(r->timeout, s->timeout_ms);
		}
	}
	r->mode = MMN_REPORT_SEND;
	r->evflags = blockable ? MMN_EV_F_BLOCKABLE : 0;
	if (!blocking)
		return;
	if (!blockable) {
		r->mode = MMN_REPORT_REFUSE;
		r->evflags |= MMN_EV_F_REFUSED;
		/* the core stops this walk: the covered callbacks will not come */
		if (w && w->task)
			walk_clear(g, w);
	} else if (current->tgid == READ_ONCE(mmn_daemon.tgid)) {
		r->mode = MMN_REPORT_SELF;
	} else if (mmn_wait_add(&r->wt, g, r->b)) {
		r->mode = MMN_REPORT_WAIT;
		r->evflags |= MMN_EV_F_NEEDS_ACK;
	}
}

/* Send the INVALIDATE (no lock held); on failure, DESYNC and no wait. */
static int send_invalidate(struct mmn_report *r, struct mmn_group *g,
		const struct mmu_notifier_range *range)
{
	int ret;

	if (r->mode == MMN_REPORT_SELF)
		mmn_count(MMN_STATS_A_SELF_SKIPS);
	if (r->mode == MMN_REPORT_REFUSE)
		mmn_count(MMN_STATS_A_NONBLOCK_REFUSED);
	ret = mmn_ev_invalidate(r->b, range, r->evflags, r->pid);
	if (!ret) {
		mmn_count(MMN_STATS_A_EVENTS);
		return 0;
	}
	if (r->mode == MMN_REPORT_WAIT) {
		mmn_wait_cancel(&r->wt);
		r->mode = MMN_REPORT_SEND;
	}
	if (ret != -ENOTCONN) {
		mmn_count(MMN_STATS_A_SEND_FAILS);
		desync_batch(g, r->b, false, MMN_REVOKE_DESYNC);
	}
	return ret;
}

/* The bounded wait for the ACK (no lock held); a timeout is a DESYNC. */
static void await_ack(struct mmn_report *r, struct mmn_group *g)
{
	int done;

	mmn_count(MMN_STATS_A_WAITS);
	done = mmn_wait_for(&r->wt, r->timeout);
	if (done == MMN_WAIT_ACKED) {
		mmn_count(MMN_STATS_A_ACKS);
	} else if (done == MMN_WAIT_PENDING) {
		mmn_count(MMN_STATS_A_TIMEOUTS);
		desync_batch(g, r->b, true, MMN_REVOKE_TIMEOUT);
	}
}

/*
 * The gatherer: report self and every covered subscription, then wait if
 * needed.  Called without locks; returns the value for .invalidate.
 */
static bool report(struct mmn_sub *self, const struct mmu_notifier_range *range,
		   unsigned long cur_seq, unsigned int cap)
{
	bool blockable = mmu_notifier_range_blockable(range);
	struct mmn_group *g = self->group;
	struct mmn_report r = { };
	struct mmn_walk *w;
	int ret;

	r.b = mmn_batch_new(clamp_t(unsigned int, cap, 1, MMN_BATCH_MAX));
	if (!r.b)
		return report_nothing(self, blockable);

	spin_lock(&g->lock);
	if (self->state != MMN_SUB_LIVE) {
		spin_unlock(&g->lock);
		kfree(r.b);
		return true;
	}
	w = gather(r.b, self, range, cur_seq);
	r.b->seq = atomic64_inc_return(&mmn_seq);
	decide(&r, g, w, blockable);
	/* Pins the notifier for the INVALIDATE_END work; put by that work. */
	kref_get(&self->ref);
	r.b->anchor = self;
	r.pid = self->pid;
	spin_unlock(&g->lock);

	ret = send_invalidate(&r, g, range);
	if (r.mode == MMN_REPORT_WAIT)
		await_ack(&r, g);
	/*
	 * Hand-off: always give the batch to the worker: it owns the anchor
	 * reference, whose last put must not happen in this callback.  It
	 * sends INVALIDATE_END only for a delivered INVALIDATE, and always
	 * does.
	 */
	r.b->send_end = !ret;
	queue_delayed_work(mmn_wq, &r.b->work, 0);
	return r.mode != MMN_REPORT_REFUSE;
}

static bool release(struct mmn_group *g, struct mmn_sub *sub)
	__releases(&g->lock)
{
	bool live = sub->state == MMN_SUB_LIVE;
	u32 id = sub->id;
	int ret;

	lockdep_assert_held(&g->lock);
	if (live || sub->state == MMN_SUB_NEW)
		sub->state = MMN_SUB_RELEASED;
	if (live)
		mmn_wait_recheck(g);
	spin_unlock(&g->lock);
	if (!live)
		return true;
	mmn_count(MMN_STATS_A_RELEASES);
	ret = mmn_ev_release(id, MMN_GFP_ATOMIC);
	if (ret && ret != -ENOTCONN) {
		mmn_count(MMN_STATS_A_SEND_FAILS);
		spin_lock(&g->lock);
		sub->desync = true;
		spin_unlock(&g->lock);
		send_lost(g, sub, ret);
	}
	return true;
}

static bool mmn_invalidate(struct mmu_interval_notifier *mni,
			   const struct mmu_notifier_range *range,
			   unsigned long cur_seq)
{
	struct mmn_sub *sub = container_of(mni, struct mmn_sub, notifier);
	struct mmn_group *g = sub->group;
	struct mmn_walk *w;
	unsigned int cap;

	spin_lock(&g->lock);
	mmu_interval_set_seq(mni, cur_seq);
	sub->armed = true;
	w = walk_find(g);
	if (w && (!walk_match(w, range, cur_seq) || w->gatherer == sub)) {
		/*
		 * Our thread's previous walk is over.  The gatherer's callback
		 * comes once per walk: seeing it again means the walk was cut
		 * short (another notifier refused a non-blockable one) and the
		 * core retries with the same range and cur_seq.
		 */
		walk_clear(g, w);
		w = NULL;
	}
	if (w && (sub->cover & walk_bit(g, w))) {
		/* already reported (and waited for) by this walk's gatherer */
		sub->cover &= ~walk_bit(g, w);
		if (!--w->pending)
			w->task = NULL;
		spin_unlock(&g->lock);
		return true;
	}
	if (range->event == MMU_NOTIFY_RELEASE)
		return release(g, sub);
	if (sub->state != MMN_SUB_LIVE || !READ_ONCE(mmn_daemon.bound)) {
		spin_unlock(&g->lock);
		return true;
	}
	/* inside a walk whose gatherer could not list us: report only us */
	cap = w ? 1 : g->nsubs;
	spin_unlock(&g->lock);
	return report(sub, range, cur_seq, cap);
}

const struct mmu_interval_notifier_ops mmn_walk_ops = {
	.invalidate = mmn_invalidate,
};
