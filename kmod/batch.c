// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: the batch of one invalidation and its INVALIDATE_END work.
 *
 * The invalidate callback (walk.c) fills a batch, sends the INVALIDATE and
 * always hands the batch to its work, even when nothing was delivered: the
 * work owns the reference on the anchor subscription, whose last put must
 * not happen in the callback (it removes the notifier, which waits for the
 * callbacks).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/minmax.h>
#include <linux/mmu_notifier.h>
#include <linux/overflow.h>
#include <linux/slab.h>

#include "batch.h"
#include "core.h"
#include "event.h"
#include "sub.h"

static void end_work(struct work_struct *work);

struct mmn_batch *mmn_batch_new(unsigned int cap)
{
	struct mmn_batch *b;

	b = mmn_fail_alloc() ? NULL :
	    kmalloc(struct_size(b, ent, cap), MMN_GFP_ATOMIC);
	if (!b)
		return NULL;
	INIT_DELAYED_WORK(&b->work, end_work);
	b->quiesced = false;
	b->retries = 0;
	b->cap = cap;
	b->n = 0;
	return b;
}

/* Longest pause between two tries of an INVALIDATE_END (ms). */
#define MMN_END_RETRY_MAX_MS	100U

/*
 * INVALIDATE_END: mmu_interval_read_begin() sleeps until no invalidation of
 * the anchor's mm is in progress any more, i.e. the range is quiescent; then
 * the daemon may publish an even sequence.  The anchor reference keeps the
 * notifier inserted (and its mm_struct grabbed) until we are done.
 *
 * Every delivered INVALIDATE gets its INVALIDATE_END while the daemon is
 * bound: nothing else can close the event on the daemon's side (a REVOKED
 * resynchronises a subscription but cannot tell that the range is
 * quiescent).  So a send that fails for a reason that passes (-EAGAIN: the
 * daemon's receive queue is full or congested, which netlink also reports
 * to it as ENOBUFS; -ENOMEM) is retried from this work with a growing
 * pause, until it is queued or the daemon is gone (-ENOTCONN, or
 * -ECONNREFUSED: its port closed and the unbind follows).  A congested
 * socket accepts again once the daemon has emptied its queue, which it does
 * on ENOBUFS.  The anchor stays pinned meanwhile: an UNSUBSCRIBE of it only
 * completes its removal later.  Any other error cannot be retried (it
 * would not pass): the subscriptions are marked DESYNC and the daemon is
 * told with REVOKED, as before.
 */
static void end_work(struct work_struct *work)
{
	struct mmn_batch *b = container_of(to_delayed_work(work),
					   struct mmn_batch, work);
	int ret;

	if (b->send_end) {
		if (!b->quiesced) {
			mmu_interval_read_begin(&b->anchor->notifier);
			b->quiesced = true;
		}
		ret = mmn_ev_invalidate_end(b);
		if (ret == -EAGAIN || ret == -ENOMEM) {
			/* 1, 2, 4 ... 64, then 100 ms */
			unsigned int ms = min(1U << min(b->retries, 7U),
					      MMN_END_RETRY_MAX_MS);

			if (!b->retries++)
				mmn_count(MMN_STATS_A_SEND_FAILS);
			queue_delayed_work(mmn_wq, &b->work,
					   msecs_to_jiffies(ms));
			return;
		}
		if (!ret) {
			mmn_count(MMN_STATS_A_ENDS);
		} else if (ret != -ENOTCONN && ret != -ECONNREFUSED) {
			mmn_count(MMN_STATS_A_SEND_FAILS);
			mmn_sub_desync_ids(b);
		}
	}
	mmn_sub_put(b->anchor);
	kfree(b);
}
