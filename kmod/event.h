/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: kernel -> daemon messages (INVALIDATE, INVALIDATE_END, RELEASE,
 * REVOKED, and the entries of a GET_SUBS dump), unicast to the bound port
 * without ever sleeping.
 */
#ifndef MMN_EVENT_H
#define MMN_EVENT_H

#include <linux/gfp.h>
#include <linux/types.h>

struct genl_family;
struct mmn_batch;
struct mmu_notifier_range;
struct netlink_callback;
struct sk_buff;

/*
 * GFP for messages sent from the invalidate path: it runs under locks of
 * the core mm (and possibly for the OOM reaper), so it must neither sleep
 * nor enter reclaim, and a failure is handled (the lost-event fallback), so
 * it need not warn.
 */
#define MMN_GFP_ATOMIC	(GFP_NOWAIT | __GFP_NOWARN)

/* The family every message belongs to; set once, before it is registered. */
void mmn_ev_init(const struct genl_family *family);

int mmn_ev_invalidate(const struct mmn_batch *b,
		      const struct mmu_notifier_range *range, u32 evflags,
		      u32 pid);
int mmn_ev_invalidate_end(const struct mmn_batch *b);
int mmn_ev_release(u32 id, gfp_t gfp);
int mmn_ev_revoked(u32 id, u32 reason, gfp_t gfp);
/*
 * The lost-event fallback: a REVOKED(DESYNC) built in process context
 * (alloc, then fill once the id is known; fill cannot fail on an skb from
 * alloc) and sent from the invalidate path with no allocation at all.
 * mmn_ev_send() consumes the skb.
 */
struct sk_buff *mmn_ev_lost_alloc(gfp_t gfp);
int mmn_ev_lost_fill(struct sk_buff *skb, u32 id);
int mmn_ev_send(struct sk_buff *skb);

/* What a GET_SUBS dump says about one subscription. */
struct mmn_sub_info {
	u32 id, pid;
	unsigned long start, length;
	u32 flags, state, timeout_ms;	/* state: MMN_SUB_ST_* */
};

/* Append one GET_SUBS entry to a dump; -EMSGSIZE when skb is full. */
int mmn_ev_put_sub(struct sk_buff *skb, struct netlink_callback *cb,
		   const struct mmn_sub_info *info);

#endif /* MMN_EVENT_H */
