/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: the batch, i.e. the subscriptions one invalidation reports in one
 * INVALIDATE, and the work that sends its INVALIDATE_END.
 */
#ifndef MMN_BATCH_H
#define MMN_BATCH_H

#include <linux/types.h>
#include <linux/workqueue.h>

struct mmn_sub;

/* Most subscriptions one INVALIDATE lists; the rest report themselves. */
#define MMN_BATCH_MAX	64

struct mmn_batch_ent {
	struct mmn_sub *sub;	/* valid only inside the invalidate callback */
	u32 id;
	unsigned long start, end;	/* clipped, end exclusive */
};

/*
 * The subscriptions one invalidation reports.  Allocated GFP_NOWAIT in the
 * callback; after a successful INVALIDATE it becomes the INVALIDATE_END work
 * item and owns a reference on anchor, the subscription whose notifier
 * mmu_interval_read_begin() sleeps on.  Only that work touches it then
 * (one work item at a time: a retry is the same item queued again).
 */
struct mmn_batch {
	struct delayed_work work;
	struct mmn_sub *anchor;
	u64 seq;
	bool send_end;		/* the INVALIDATE was delivered */
	bool quiesced;		/* mmu_interval_read_begin() returned */
	unsigned int retries;	/* failed INVALIDATE_END sends so far */
	unsigned int n, cap;
	struct mmn_batch_ent ent[];
};

/*
 * A batch for up to cap (1..MMN_BATCH_MAX) subscriptions, its work set up,
 * allocated without sleeping; NULL when memory is short (or the test knob
 * fail_event_alloc says so).  Freed by its work.
 */
struct mmn_batch *mmn_batch_new(unsigned int cap);

#endif /* MMN_BATCH_H */
