/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: kernel -> daemon messages (INVALIDATE, INVALIDATE_END, RELEASE,
 * REVOKED), unicast to the bound port without ever sleeping.
 */
#ifndef MMN_EVENT_H
#define MMN_EVENT_H

#include <linux/gfp.h>
#include <linux/types.h>
#include <linux/workqueue.h>

struct mmn_sub;
struct mmu_notifier_range;

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

/* GFP for messages sent from the invalidate path (P3). */
#define MMN_GFP_ATOMIC	(GFP_NOWAIT | __GFP_NOWARN)

int mmn_ev_invalidate(const struct mmn_batch *b,
		      const struct mmu_notifier_range *range, u32 evflags,
		      u32 pid);
struct sk_buff;

int mmn_ev_release(u32 id, gfp_t gfp);
int mmn_ev_revoked(u32 id, u32 reason, gfp_t gfp);
void mmn_ev_end_work(struct work_struct *work);
/*
 * The lost-event fallback: a REVOKED(DESYNC) built in process context
 * (alloc, then fill once the id is known; fill cannot fail on an skb from
 * alloc) and sent from the invalidate path with no allocation at all.
 * mmn_ev_send() consumes the skb.
 */
struct sk_buff *mmn_ev_lost_alloc(gfp_t gfp);
int mmn_ev_lost_fill(struct sk_buff *skb, u32 id);
int mmn_ev_send(struct sk_buff *skb);

#endif /* MMN_EVENT_H */
