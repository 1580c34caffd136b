// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: subscriptions and the invalidate callback.
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

#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/overflow.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/xarray.h>
#include <net/genetlink.h>

#include "core.h"
#include "event.h"
#include "genl.h"
#include "sub.h"

/* Most subscriptions one INVALIDATE lists; the rest report themselves. */
#define MMN_BATCH_MAX	64

/* id -> published subscription; changed under mmn_ctl_mutex. */
static DEFINE_XARRAY_ALLOC1(mmn_subs);
/*
 * Cyclic cursor of mmn_subs (under mmn_ctl_mutex): ids are handed out in
 * increasing order and wrap only after 2^32 - 1 of them, so an id is not
 * reused right after its UNSUBSCRIBE and a late REVOKED/RELEASE or
 * INVALIDATE_END for an old id cannot be taken for a new subscription.
 */
static u32 mmn_subs_next;
/* Every group; under mmn_ctl_mutex. */
static LIST_HEAD(mmn_groups);
/* Subscriptions counted against max_subs (not yet DYING). */
static atomic_t mmn_nsubs = ATOMIC_INIT(0);
/* Subscription objects not yet freed; module exit waits for zero. */
static atomic_t mmn_objs = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(mmn_objs_wq);

/* Waiters of blockable invalidations (struct mmn_waiter, on their stacks). */
static DEFINE_SPINLOCK(mmn_wait_lock);
static LIST_HEAD(mmn_waiters);
static DECLARE_WAIT_QUEUE_HEAD(mmn_waitq);
static atomic64_t mmn_seq = ATOMIC64_INIT(0);

static bool mmn_invalidate(struct mmu_interval_notifier *mni,
			   const struct mmu_notifier_range *range,
			   unsigned long cur_seq);

static const struct mmu_interval_notifier_ops mmn_ops = {
	.invalidate = mmn_invalidate,
};

unsigned int mmn_sub_count(void)
{
	return atomic_read(&mmn_nsubs);
}

/* ---- walks (group->lock held) ---- */

static u32 walk_bit(struct mmn_group *g, struct mmn_walk *w)
{
	return BIT(w - g->walks);
}

static struct mmn_walk *walk_find(struct mmn_group *g)
{
	int i;

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

	list_for_each_entry(s, &g->subs, node)
		s->cover &= ~bit;
	w->task = NULL;
	w->pending = 0;
}

/* ---- waiters ---- */

static bool batch_still_blocking(const struct mmn_batch *b)
{
	unsigned int i;

	for (i = 0; i < b->n; i++) {
		const struct mmn_sub *s = b->ent[i].sub;

		if (s->state == MMN_SUB_LIVE && (s->flags & MMN_SUB_F_BLOCKING))
			return true;
	}
	return false;
}

/*
 * A subscription of g stopped being LIVE and BLOCKING: release the waiters
 * of g that no longer list any.  group->lock held; the batches of waiters
 * of g are stable because their invalidations are still running.
 */
static void waiters_recheck(struct mmn_group *g)
{
	struct mmn_waiter *wt, *tmp;
	bool woke = false;

	spin_lock(&mmn_wait_lock);
	list_for_each_entry_safe(wt, tmp, &mmn_waiters, node) {
		if (wt->group != g || batch_still_blocking(wt->batch))
			continue;
		list_del(&wt->node);
		WRITE_ONCE(wt->done, MMN_WAIT_GONE);
		woke = true;
	}
	spin_unlock(&mmn_wait_lock);
	if (woke)
		wake_up_all(&mmn_waitq);
}

static void waiters_release_all(void)
{
	struct mmn_waiter *wt, *tmp;

	spin_lock(&mmn_wait_lock);
	list_for_each_entry_safe(wt, tmp, &mmn_waiters, node) {
		list_del(&wt->node);
		WRITE_ONCE(wt->done, MMN_WAIT_GONE);
	}
	spin_unlock(&mmn_wait_lock);
	wake_up_all(&mmn_waitq);
}

int mmn_sub_ack(u64 seq)
{
	struct mmn_waiter *wt;
	bool found = false;

	spin_lock(&mmn_wait_lock);
	list_for_each_entry(wt, &mmn_waiters, node) {
		if (wt->seq != seq)
			continue;
		list_del(&wt->node);
		WRITE_ONCE(wt->done, MMN_WAIT_ACKED);
		found = true;
		break;
	}
	spin_unlock(&mmn_wait_lock);
	if (!found) {
		mmn_count(MMN_STATS_A_STALE_ACKS);
		return -ENOENT;
	}
	wake_up_all(&mmn_waitq);
	return 0;
}

/* ---- the invalidate path ---- */

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

/*
 * The gatherer: report self and every covered subscription, then wait if
 * needed.  Called without locks; returns the value for .invalidate.
 */
static bool report(struct mmn_sub *self, const struct mmu_notifier_range *range,
		   unsigned long cur_seq, unsigned int cap)
{
	bool blockable = mmu_notifier_range_blockable(range);
	struct mmn_group *g = self->group;
	bool blocking = false, wait = false, refused = false, skip = false;
	struct mmn_waiter wt = { .done = MMN_WAIT_PENDING };
	u32 evflags = 0, timeout = U32_MAX, pid;
	struct mmn_walk *w = NULL;
	struct mmn_batch *b;
	struct mmn_sub *s;
	unsigned int i;
	int ret;

	cap = clamp_t(unsigned int, cap, 1, MMN_BATCH_MAX);
	b = mmn_fail_alloc() ? NULL :
	    kmalloc(struct_size(b, ent, cap), MMN_GFP_ATOMIC);
	if (!b) {
		/* Nothing can be reported: the daemon must resynchronise. */
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
	INIT_DELAYED_WORK(&b->work, mmn_ev_end_work);
	b->quiesced = false;
	b->retries = 0;
	b->cap = cap;
	b->n = 0;

	spin_lock(&g->lock);
	if (self->state != MMN_SUB_LIVE) {
		spin_unlock(&g->lock);
		kfree(b);
		return true;
	}
	batch_add(b, self, range);
	if (cap > 1)
		w = walk_new(g, self, range, cur_seq);
	if (w) {
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
	}
	for (i = 0; i < b->n; i++) {
		s = b->ent[i].sub;
		if (s->flags & MMN_SUB_F_BLOCKING) {
			blocking = true;
			timeout = min(timeout, s->timeout_ms);
		}
	}
	b->seq = atomic64_inc_return(&mmn_seq);
	if (blockable) {
		evflags |= MMN_EV_F_BLOCKABLE;
		if (blocking && current->tgid == READ_ONCE(mmn_daemon.tgid))
			skip = true;
		else if (blocking)
			wait = true;
	} else if (blocking) {
		evflags |= MMN_EV_F_REFUSED;
		refused = true;
		/* the core stops this walk: the covered callbacks will not come */
		if (w && w->task)
			walk_clear(g, w);
	}
	if (wait) {
		/*
		 * Registered under group->lock so that an UNSUBSCRIBE or
		 * SET_FLAGS recheck cannot miss it, and after reading bound
		 * under mmn_wait_lock so that a daemon teardown cannot.
		 */
		spin_lock(&mmn_wait_lock);
		if (READ_ONCE(mmn_daemon.bound)) {
			wt.seq = b->seq;
			wt.group = g;
			wt.batch = b;
			list_add_tail(&wt.node, &mmn_waiters);
			evflags |= MMN_EV_F_NEEDS_ACK;
		} else {
			wait = false;
		}
		spin_unlock(&mmn_wait_lock);
	}
	/* Pins the notifier for the INVALIDATE_END work; put by that work. */
	kref_get(&self->ref);
	b->anchor = self;
	pid = self->pid;
	spin_unlock(&g->lock);

	if (skip)
		mmn_count(MMN_STATS_A_SELF_SKIPS);
	if (refused)
		mmn_count(MMN_STATS_A_NONBLOCK_REFUSED);

	ret = mmn_ev_invalidate(b, range, evflags, pid);
	if (ret) {
		if (wait) {
			spin_lock(&mmn_wait_lock);
			if (READ_ONCE(wt.done) == MMN_WAIT_PENDING)
				list_del(&wt.node);
			spin_unlock(&mmn_wait_lock);
			wait = false;
		}
		if (ret != -ENOTCONN) {
			mmn_count(MMN_STATS_A_SEND_FAILS);
			desync_batch(g, b, false, MMN_REVOKE_DESYNC);
		}
	} else {
		mmn_count(MMN_STATS_A_EVENTS);
	}

	if (wait) {
		int done;

		mmn_count(MMN_STATS_A_WAITS);
		wait_event_timeout(mmn_waitq,
				   READ_ONCE(wt.done) != MMN_WAIT_PENDING,
				   msecs_to_jiffies(mmn_clamp_timeout(timeout)));
		spin_lock(&mmn_wait_lock);
		done = READ_ONCE(wt.done);
		if (done == MMN_WAIT_PENDING)
			list_del(&wt.node);
		spin_unlock(&mmn_wait_lock);
		if (done == MMN_WAIT_ACKED) {
			mmn_count(MMN_STATS_A_ACKS);
		} else if (done == MMN_WAIT_PENDING) {
			mmn_count(MMN_STATS_A_TIMEOUTS);
			desync_batch(g, b, true, MMN_REVOKE_TIMEOUT);
		}
	}

	/*
	 * Always hand the batch to the worker: it owns the anchor reference,
	 * whose last put must not happen in this callback.  It sends
	 * INVALIDATE_END only for a delivered INVALIDATE, and always does.
	 */
	b->send_end = !ret;
	queue_delayed_work(mmn_wq, &b->work, 0);
	return !refused;
}

static bool release(struct mmn_group *g, struct mmn_sub *sub)
	__releases(&g->lock)
{
	bool live = sub->state == MMN_SUB_LIVE;
	u32 id = sub->id;
	int ret;

	if (live || sub->state == MMN_SUB_NEW)
		sub->state = MMN_SUB_RELEASED;
	if (live)
		waiters_recheck(g);
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

/* ---- lifetime ---- */

static struct mmn_group *group_get_locked(struct mm_struct *mm)
{
	struct mmn_group *g;

	lockdep_assert_held(&mmn_ctl_mutex);
	list_for_each_entry(g, &mmn_groups, node) {
		if (g->mm == mm) {
			g->refs++;
			return g;
		}
	}
	g = kzalloc(sizeof(*g), GFP_KERNEL_ACCOUNT);
	if (!g)
		return NULL;
	g->mm = mm;
	g->refs = 1;
	spin_lock_init(&g->lock);
	INIT_LIST_HEAD(&g->subs);
	list_add(&g->node, &mmn_groups);
	return g;
}

static void group_put_locked(struct mmn_group *g)
{
	lockdep_assert_held(&mmn_ctl_mutex);
	if (--g->refs)
		return;
	list_del(&g->node);
	kfree(g);
}

static void unlink_sub(struct mmn_sub *sub)
{
	struct mmn_group *g = sub->group;

	mutex_lock(&mmn_ctl_mutex);
	spin_lock(&g->lock);
	list_del(&sub->node);
	g->nsubs--;
	spin_unlock(&g->lock);
	group_put_locked(g);
	mutex_unlock(&mmn_ctl_mutex);
	nlmsg_free(sub->lost);
	kfree(sub);
	if (atomic_dec_and_test(&mmn_objs))
		wake_up_all(&mmn_objs_wq);
}

/* Last reference: only ever dropped in a worker (never in a callback). */
static void sub_release(struct kref *ref)
{
	struct mmn_sub *sub = container_of(ref, struct mmn_sub, ref);

	/* waits for every callback of this notifier; none will follow */
	mmu_interval_notifier_remove(&sub->notifier);
	unlink_sub(sub);
}

void mmn_sub_put(struct mmn_sub *sub)
{
	kref_put(&sub->ref, sub_release);
}

static void remove_work(struct work_struct *work)
{
	mmn_sub_put(container_of(work, struct mmn_sub, remove_work));
}

/* Stop reporting sub and queue its removal.  mmn_ctl_mutex held. */
static void kill_locked(struct mmn_sub *sub)
{
	struct mmn_group *g = sub->group;

	lockdep_assert_held(&mmn_ctl_mutex);
	spin_lock(&g->lock);
	sub->state = MMN_SUB_DYING;
	waiters_recheck(g);
	spin_unlock(&g->lock);
	atomic_dec(&mmn_nsubs);
	queue_work(mmn_wq, &sub->remove_work);
}

int mmn_sub_create(u32 nr, unsigned long start, unsigned long len, u32 flags,
		   u32 timeout_ms, struct netlink_ext_ack *extack, u32 *idp)
{
	struct task_struct *task = NULL;
	struct mm_struct *mm;
	struct mmn_group *g;
	struct mmn_sub *sub;
	unsigned long end;
	bool armed;
	struct pid *pid;
	u64 gen;
	int ret;

	if (!len) {
		NL_SET_ERR_MSG(extack, "length is zero");
		return -EINVAL;
	}
	if (!PAGE_ALIGNED(start) || !PAGE_ALIGNED(len)) {
		NL_SET_ERR_MSG(extack, "start and length must be page aligned");
		return -EINVAL;
	}
	if (check_add_overflow(start, len, &end)) {
		NL_SET_ERR_MSG(extack, "start + length overflows");
		return -EOVERFLOW;
	}
	if (flags & ~__MMN_SUB_F_ALL) {
		NL_SET_ERR_MSG(extack, "unknown subscription flags");
		return -EOPNOTSUPP;
	}
	if (flags & MMN_SUB_F_RESYNCED) {
		NL_SET_ERR_MSG(extack, "RESYNCED is only valid in SET_FLAGS");
		return -EINVAL;
	}

	pid = find_get_pid(nr);
	if (pid)
		task = get_pid_task(pid, PIDTYPE_TGID);
	put_pid(pid);
	if (!task) {
		NL_SET_ERR_MSG(extack, "no such process");
		return -ESRCH;
	}
	if (task->flags & PF_KTHREAD) {
		put_task_struct(task);
		NL_SET_ERR_MSG(extack, "kernel threads cannot be subscribed");
		return -EINVAL;
	}
	mm = get_task_mm(task);
	put_task_struct(task);
	if (!mm) {
		NL_SET_ERR_MSG(extack, "process has no address space");
		return -ESRCH;
	}
	ret = -EINVAL;
	if (mm == current->mm) {
		NL_SET_ERR_MSG(extack, "the daemon cannot subscribe its own address space");
		goto out_mm;
	}
	if (end > mm->task_size) {
		NL_SET_ERR_MSG(extack, "range ends beyond the target's address space");
		goto out_mm;
	}

	ret = -ENOMEM;
	sub = kzalloc(sizeof(*sub), GFP_KERNEL_ACCOUNT);
	if (!sub)
		goto out_mm;
	/* filled once the id is known; freed with sub on every path */
	sub->lost = mmn_ev_lost_alloc(GFP_KERNEL_ACCOUNT);
	if (!sub->lost) {
		kfree(sub);
		goto out_mm;
	}
	sub->pid = nr;
	sub->start = start;
	sub->last = end - 1;
	sub->flags = flags;
	sub->state = MMN_SUB_NEW;
	kref_init(&sub->ref);
	INIT_WORK(&sub->remove_work, remove_work);

	mutex_lock(&mmn_ctl_mutex);
	ret = -ENOTCONN;
	if (!mmn_daemon.bound)
		goto out_unlock;
	ret = -ENOSPC;
	if (atomic_read(&mmn_nsubs) >= READ_ONCE(mmn_max_subs)) {
		NL_SET_ERR_MSG(extack, "too many subscriptions (module parameter max_subs)");
		goto out_unlock;
	}
	ret = -ENOMEM;
	g = group_get_locked(mm);
	if (!g)
		goto out_unlock;
	sub->timeout_ms = timeout_ms ? timeout_ms : mmn_daemon.timeout_ms;
	sub->group = g;
	gen = mmn_daemon.gen;
	spin_lock(&g->lock);
	list_add_tail(&sub->node, &g->subs);
	g->nsubs++;
	spin_unlock(&g->lock);
	atomic_inc(&mmn_nsubs);
	atomic_inc(&mmn_objs);
	mutex_unlock(&mmn_ctl_mutex);

	/* May take the target's mmap_lock: no lock of ours is held. */
	ret = mmu_interval_notifier_insert(&sub->notifier, mm, start, len,
					   &mmn_ops);
	/*
	 * A deferred insert (an invalidation was running) leaves the rb node
	 * empty until that invalidation ends; a linked node never unlinks
	 * before remove().  So a stale "empty" only costs an extra event.
	 */
	armed = !ret && !RB_EMPTY_NODE(&sub->notifier.interval_tree.rb);
	/* never run a dead target's exit_mmap() in the daemon (P2) */
	mmput_async(mm);
	if (ret) {
		atomic_dec(&mmn_nsubs);
		unlink_sub(sub);
		return ret;
	}

	mutex_lock(&mmn_ctl_mutex);
	if (!mmn_daemon.bound || mmn_daemon.gen != gen) {
		ret = -ENOTCONN;
		goto out_kill;
	}
	/* 1: the cursor wrapped, which is fine */
	ret = xa_alloc_cyclic(&mmn_subs, &sub->id, sub, xa_limit_32b,
			      &mmn_subs_next, GFP_KERNEL);
	if (ret < 0)
		goto out_kill;
	/* before LIVE: nothing sends it earlier */
	ret = mmn_ev_lost_fill(sub->lost, sub->id);
	if (ret) {
		xa_erase(&mmn_subs, sub->id);
		goto out_kill;
	}
	spin_lock(&g->lock);
	if (sub->state == MMN_SUB_RELEASED) {
		spin_unlock(&g->lock);
		xa_erase(&mmn_subs, sub->id);
		NL_SET_ERR_MSG(extack, "the process exited");
		ret = -ESRCH;
		goto out_kill;
	}
	sub->state = MMN_SUB_LIVE;
	sub->armed |= armed;
	*idp = sub->id;
	spin_unlock(&g->lock);
	mutex_unlock(&mmn_ctl_mutex);
	return 0;

out_kill:
	kill_locked(sub);
	mutex_unlock(&mmn_ctl_mutex);
	return ret;
out_unlock:
	mutex_unlock(&mmn_ctl_mutex);
	nlmsg_free(sub->lost);
	kfree(sub);
out_mm:
	mmput_async(mm);
	return ret;
}

int mmn_sub_unsubscribe(u32 id)
{
	struct mmn_sub *sub;

	mutex_lock(&mmn_ctl_mutex);
	sub = xa_erase(&mmn_subs, id);
	if (sub)
		kill_locked(sub);
	mutex_unlock(&mmn_ctl_mutex);
	return sub ? 0 : -ENOENT;
}

int mmn_sub_set_flags(u32 id, u32 flags, struct netlink_ext_ack *extack)
{
	struct sk_buff *lost = NULL;
	struct mmn_sub *sub;
	struct mmn_group *g;
	int ret = 0;

	if (flags & ~__MMN_SUB_F_ALL) {
		NL_SET_ERR_MSG(extack, "unknown subscription flags");
		return -EOPNOTSUPP;
	}
	if (flags & MMN_SUB_F_RESYNCED) {
		/* a fresh fallback, in case the old one was used (see top) */
		lost = mmn_ev_lost_alloc(GFP_KERNEL_ACCOUNT);
		if (lost && mmn_ev_lost_fill(lost, id)) {
			nlmsg_free(lost);
			lost = NULL;
		}
	}
	mutex_lock(&mmn_ctl_mutex);
	sub = xa_load(&mmn_subs, id);
	if (!sub) {
		mutex_unlock(&mmn_ctl_mutex);
		nlmsg_free(lost);
		NL_SET_ERR_MSG(extack, "no such subscription");
		return -ENOENT;
	}
	g = sub->group;
	spin_lock(&g->lock);
	if (flags & MMN_SUB_F_RESYNCED) {
		if (!sub->lost)
			swap(sub->lost, lost);
		/*
		 * Without a fallback a later loss could go unnoticed: stay
		 * DESYNC.  The BLOCKING change still applies (clearing it is
		 * what lets the OOM reaper go on).
		 */
		if (sub->lost)
			sub->desync = false;
		else
			ret = -ENOMEM;
	}
	sub->flags = flags & MMN_SUB_F_BLOCKING;
	if (!sub->flags)
		waiters_recheck(g);
	spin_unlock(&g->lock);
	mutex_unlock(&mmn_ctl_mutex);
	nlmsg_free(lost);
	if (ret)
		NL_SET_ERR_MSG(extack, "flags set, but DESYNC kept (out of memory): retry RESYNCED");
	return ret;
}

/* From the INVALIDATE_END worker: the batch's pointers are stale, use ids. */
void mmn_sub_desync_batch(const struct mmn_batch *b)
{
	unsigned int i;

	mutex_lock(&mmn_ctl_mutex);
	for (i = 0; i < b->n; i++) {
		struct mmn_sub *s = xa_load(&mmn_subs, b->ent[i].id);

		if (!s)
			continue;
		spin_lock(&s->group->lock);
		s->desync = true;
		spin_unlock(&s->group->lock);
	}
	mutex_unlock(&mmn_ctl_mutex);
	for (i = 0; i < b->n; i++)
		mmn_ev_revoked(b->ent[i].id, MMN_REVOKE_DESYNC, GFP_KERNEL);
}

/* The daemon is gone (already marked unbound).  mmn_ctl_mutex held. */
void mmn_sub_teardown_all(void)
{
	struct mmn_sub *sub;
	unsigned long id;

	lockdep_assert_held(&mmn_ctl_mutex);
	waiters_release_all();
	xa_for_each(&mmn_subs, id, sub) {
		xa_erase(&mmn_subs, id);
		kill_locked(sub);
	}
}

/* Module exit: every subscription removed and freed (workers done). */
void mmn_sub_wait_all_gone(void)
{
	wait_event(mmn_objs_wq, !atomic_read(&mmn_objs));
}

struct mmn_dump_ctx {
	unsigned long next;
};

int mmn_sub_dump(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct mmn_dump_ctx *ctx = (void *)cb->ctx;
	struct mmn_sub *sub;
	unsigned long id;

	BUILD_BUG_ON(sizeof(*ctx) > sizeof(cb->ctx));
	mutex_lock(&mmn_ctl_mutex);
	xa_for_each_start(&mmn_subs, id, sub, ctx->next) {
		u32 state, flags, timeout;
		void *hdr;

		spin_lock(&sub->group->lock);
		state = sub->state == MMN_SUB_RELEASED ? MMN_SUB_ST_RELEASED :
			sub->state == MMN_SUB_DYING ? MMN_SUB_ST_DYING :
			MMN_SUB_ST_LIVE;
		if (sub->desync)
			state |= MMN_SUB_ST_DESYNC;
		flags = sub->flags;
		timeout = sub->timeout_ms;
		spin_unlock(&sub->group->lock);

		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid,
				  cb->nlh->nlmsg_seq, &mmn_genl_family,
				  NLM_F_MULTI, MMN_CMD_GET_SUBS);
		if (!hdr)
			break;
		if (nla_put_u32(skb, MMN_A_SUB_ID, sub->id) ||
		    nla_put_u32(skb, MMN_A_PID, sub->pid) ||
		    nla_put_u64_64bit(skb, MMN_A_START, sub->start, MMN_A_PAD) ||
		    nla_put_u64_64bit(skb, MMN_A_LENGTH,
				      sub->last + 1 - sub->start, MMN_A_PAD) ||
		    nla_put_u32(skb, MMN_A_SUB_FLAGS, flags) ||
		    nla_put_u32(skb, MMN_A_SUB_STATE, state) ||
		    nla_put_u32(skb, MMN_A_TIMEOUT_MS, timeout)) {
			genlmsg_cancel(skb, hdr);
			break;
		}
		genlmsg_end(skb, hdr);
		ctx->next = id + 1;
	}
	mutex_unlock(&mmn_ctl_mutex);
	return skb->len;
}
