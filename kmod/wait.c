// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: waiters of blockable invalidations and the ACKs that free them.
 *
 * A blockable invalidation that lists a BLOCKING subscription sleeps until
 * the daemon acks its seq, until no listed subscription is LIVE and BLOCKING
 * any more, until the daemon goes away, or for at most the smallest timeout
 * of its BLOCKING subscriptions (capped by max_ack_timeout_ms).  The sleep is
 * uninterruptible and holds no lock of ours.
 *
 * Locking: mmn_wait_lock protects mmn_waiters and every waiter's node and
 * done.  It nests inside group->lock and is never held while sleeping.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/lockdep.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

#include "batch.h"
#include "core.h"
#include "sub.h"
#include "wait.h"

static DEFINE_SPINLOCK(mmn_wait_lock);
/* struct mmn_waiter, on the stacks of their threads; under mmn_wait_lock. */
static LIST_HEAD(mmn_waiters);
static DECLARE_WAIT_QUEUE_HEAD(mmn_waitq);

/* group->lock of the batch's group held: state and flags are stable. */
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
 * Register wt for the ACK of b->seq.  Under group->lock, so that an
 * UNSUBSCRIBE or SET_FLAGS recheck cannot miss it, and bound is read under
 * mmn_wait_lock, so that a daemon teardown cannot.  False: no daemon to
 * wait for, wt is not registered.
 */
bool mmn_wait_add(struct mmn_waiter *wt, struct mmn_group *g,
		  struct mmn_batch *b)
{
	bool bound;

	lockdep_assert_held(&g->lock);
	spin_lock(&mmn_wait_lock);
	bound = READ_ONCE(mmn_daemon.bound);
	if (bound) {
		wt->done = MMN_WAIT_PENDING;
		wt->seq = b->seq;
		wt->group = g;
		wt->batch = b;
		list_add_tail(&wt->node, &mmn_waiters);
	}
	spin_unlock(&mmn_wait_lock);
	return bound;
}

/* Unlink wt unless somebody already did (and set its result). */
static int wait_finish(struct mmn_waiter *wt)
{
	int done;

	spin_lock(&mmn_wait_lock);
	done = READ_ONCE(wt->done);
	if (done == MMN_WAIT_PENDING)
		list_del(&wt->node);
	spin_unlock(&mmn_wait_lock);
	return done;
}

/* The INVALIDATE was not delivered: nobody will ack, stop waiting. */
void mmn_wait_cancel(struct mmn_waiter *wt)
{
	wait_finish(wt);
}

/*
 * Sleep (uninterruptibly, no lock held) until wt is acked or released, or
 * timeout_ms (clamped by max_ack_timeout_ms) passed.  Returns the enum
 * mmn_wait_result: MMN_WAIT_PENDING means the wait timed out.
 */
int mmn_wait_for(struct mmn_waiter *wt, unsigned int timeout_ms)
{
	wait_event_timeout(mmn_waitq, READ_ONCE(wt->done) != MMN_WAIT_PENDING,
			   msecs_to_jiffies(mmn_clamp_timeout(timeout_ms)));
	return wait_finish(wt);
}

int mmn_wait_ack(u64 seq)
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
	/*
	 * A sync wake-up: the daemon that sent the ACK goes back to waiting
	 * for events, so the waiter may run on its CPU (no cross-CPU wake-up,
	 * which costs most of a round trip in a virtual machine).
	 */
	__wake_up_sync(&mmn_waitq, TASK_NORMAL);
	return 0;
}

/*
 * A subscription of g stopped being LIVE and BLOCKING: release the waiters
 * of g that no longer list any.  group->lock held; the batches of waiters
 * of g are stable because their invalidations are still running.
 */
void mmn_wait_recheck(struct mmn_group *g)
{
	struct mmn_waiter *wt, *tmp;
	bool woke = false;

	lockdep_assert_held(&g->lock);
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

/* The daemon is gone: release every waiter. */
void mmn_wait_release_all(void)
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
