// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: building and sending kernel -> daemon messages.
 *
 * Messages go by unicast to the bound port.  genlmsg_unicast() never sleeps
 * (MSG_DONTWAIT; a full receive buffer gives -EAGAIN, a vanished port
 * -ECONNREFUSED) and consumes the skb in every case.  Messages built on the
 * invalidate path use MMN_GFP_ATOMIC and are sized exactly, so netlink_trim()
 * has nothing to reallocate.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mmu_notifier.h>
#include <linux/slab.h>
#include <net/genetlink.h>

#include "core.h"
#include "event.h"
#include "genl.h"
#include "sub.h"

static int unicast(struct sk_buff *skb)
{
	if (!READ_ONCE(mmn_daemon.bound)) {
		nlmsg_free(skb);
		return -ENOTCONN;
	}
	return genlmsg_unicast(&init_net, skb, READ_ONCE(mmn_daemon.portid));
}

static size_t sub_size(bool ranges)
{
	size_t sz = nla_total_size(0) + nla_total_size(sizeof(u32));

	if (ranges)
		sz += 2 * nla_total_size_64bit(sizeof(u64));
	return sz;
}

static int put_subs(struct sk_buff *skb, const struct mmn_batch *b, bool ranges)
{
	struct nlattr *subs, *one;
	unsigned int i;

	subs = nla_nest_start(skb, MMN_A_SUBS);
	if (!subs)
		return -EMSGSIZE;
	for (i = 0; i < b->n; i++) {
		const struct mmn_batch_ent *e = &b->ent[i];

		one = nla_nest_start(skb, MMN_A_SUB);
		if (!one || nla_put_u32(skb, MMN_A_SUB_ID, e->id))
			return -EMSGSIZE;
		if (ranges &&
		    (nla_put_u64_64bit(skb, MMN_A_START, e->start, MMN_A_PAD) ||
		     nla_put_u64_64bit(skb, MMN_A_END, e->end, MMN_A_PAD)))
			return -EMSGSIZE;
		nla_nest_end(skb, one);
	}
	nla_nest_end(skb, subs);
	return 0;
}

int mmn_ev_invalidate(const struct mmn_batch *b,
		      const struct mmu_notifier_range *range, u32 evflags,
		      u32 pid)
{
	size_t sz = 3 * nla_total_size_64bit(sizeof(u64)) +
		    3 * nla_total_size(sizeof(u32)) + nla_total_size(0) +
		    b->n * sub_size(true);
	struct sk_buff *skb;
	void *hdr;

	skb = mmn_fail_alloc() ? NULL : genlmsg_new(sz, MMN_GFP_ATOMIC);
	if (!skb)
		return -ENOMEM;
	hdr = genlmsg_put(skb, 0, 0, &mmn_genl_family, 0, MMN_CMD_INVALIDATE);
	if (!hdr ||
	    nla_put_u64_64bit(skb, MMN_A_SEQ, b->seq, MMN_A_PAD) ||
	    nla_put_u32(skb, MMN_A_EVENT, range->event) ||
	    nla_put_u32(skb, MMN_A_EVENT_FLAGS, evflags) ||
	    nla_put_u64_64bit(skb, MMN_A_RANGE_START, range->start, MMN_A_PAD) ||
	    nla_put_u64_64bit(skb, MMN_A_RANGE_END, range->end, MMN_A_PAD) ||
	    nla_put_u32(skb, MMN_A_PID, pid) ||
	    put_subs(skb, b, true)) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return unicast(skb);
}

#define ID_MSG_SIZE	(2 * nla_total_size(sizeof(u32)))

/* Fill an skb of at least ID_MSG_SIZE: only skb_put, no allocation. */
static int fill_id(struct sk_buff *skb, u8 cmd, u32 id, u32 reason)
{
	void *hdr;

	hdr = genlmsg_put(skb, 0, 0, &mmn_genl_family, 0, cmd);
	if (!hdr || nla_put_u32(skb, MMN_A_SUB_ID, id) ||
	    (reason && nla_put_u32(skb, MMN_A_REASON, reason)))
		return -EMSGSIZE;
	genlmsg_end(skb, hdr);
	return 0;
}

static int send_id(u8 cmd, u32 id, u32 reason, gfp_t gfp)
{
	struct sk_buff *skb;

	skb = mmn_fail_alloc() ? NULL : genlmsg_new(ID_MSG_SIZE, gfp);
	if (!skb)
		return -ENOMEM;
	if (fill_id(skb, cmd, id, reason)) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	return unicast(skb);
}

struct sk_buff *mmn_ev_lost_alloc(gfp_t gfp)
{
	return genlmsg_new(ID_MSG_SIZE, gfp);
}

int mmn_ev_lost_fill(struct sk_buff *skb, u32 id)
{
	return fill_id(skb, MMN_CMD_REVOKED, id, MMN_REVOKE_DESYNC);
}

/*
 * No allocation: netlink_unicast() only trims (best effort) and queues.  A
 * full receive queue still fails (-EAGAIN), but then netlink_overrun()
 * reports ENOBUFS on the daemon's socket, so the loss is visible anyway.
 */
int mmn_ev_send(struct sk_buff *skb)
{
	return unicast(skb);
}

int mmn_ev_release(u32 id, gfp_t gfp)
{
	return send_id(MMN_CMD_RELEASE, id, 0, gfp);
}

int mmn_ev_revoked(u32 id, u32 reason, gfp_t gfp)
{
	return send_id(MMN_CMD_REVOKED, id, reason, gfp);
}

static int send_end(const struct mmn_batch *b)
{
	size_t sz = nla_total_size_64bit(sizeof(u64)) + nla_total_size(0) +
		    b->n * sub_size(false);
	struct sk_buff *skb;
	void *hdr;

	skb = genlmsg_new(sz, GFP_KERNEL);
	if (!skb)
		return -ENOMEM;
	hdr = genlmsg_put(skb, 0, 0, &mmn_genl_family, 0,
			  MMN_CMD_INVALIDATE_END);
	if (!hdr || nla_put_u64_64bit(skb, MMN_A_SEQ, b->seq, MMN_A_PAD) ||
	    put_subs(skb, b, false)) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return unicast(skb);
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
void mmn_ev_end_work(struct work_struct *work)
{
	struct mmn_batch *b = container_of(to_delayed_work(work),
					   struct mmn_batch, work);
	int ret;

	if (b->send_end) {
		if (!b->quiesced) {
			mmu_interval_read_begin(&b->anchor->notifier);
			b->quiesced = true;
		}
		ret = send_end(b);
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
			mmn_sub_desync_batch(b);
		}
	}
	mmn_sub_put(b->anchor);
	kfree(b);
}
