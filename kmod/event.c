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
#include <net/genetlink.h>

#include "batch.h"
#include "core.h"
#include "event.h"

/*
 * Set by mmn_ev_init() before the family is registered, never changed
 * after: the control plane (genl.c) owns the family and its requests, this
 * file only needs its name and id to build messages.
 */
static const struct genl_family *mmn_family;

void mmn_ev_init(const struct genl_family *family)
{
	mmn_family = family;
}

static int unicast(struct sk_buff *skb)
{
	if (!READ_ONCE(mmn_daemon.bound)) {
		nlmsg_free(skb);
		return -ENOTCONN;
	}
	return genlmsg_unicast(&init_net, skb, READ_ONCE(mmn_daemon.portid));
}

/*
 * The uapi value of the kernel's invalidation event.  The kernel's enum
 * mmu_notifier_event is internal (it may be renumbered or grow); the uapi's
 * enum mmn_event is ABI.  No default: Kbuild makes -Wswitch an error, so a
 * kernel with an event this switch does not name fails to build until the
 * uapi has a value for it.  A value outside the enum reads as CLEAR, which
 * asks a consumer for what every invalidation asks.
 */
static u32 uapi_event(enum mmu_notifier_event event)
{
	switch (event) {
	case MMU_NOTIFY_UNMAP:
		return MMN_EVENT_UNMAP;
	case MMU_NOTIFY_CLEAR:
		return MMN_EVENT_CLEAR;
	case MMU_NOTIFY_PROTECTION_VMA:
		return MMN_EVENT_PROTECTION_VMA;
	case MMU_NOTIFY_PROTECTION_PAGE:
		return MMN_EVENT_PROTECTION_PAGE;
	case MMU_NOTIFY_SOFT_DIRTY:
		return MMN_EVENT_SOFT_DIRTY;
	case MMU_NOTIFY_RELEASE:
		return MMN_EVENT_RELEASE;
	case MMU_NOTIFY_MIGRATE:
		return MMN_EVENT_MIGRATE;
	case MMU_NOTIFY_EXCLUSIVE:
		return MMN_EVENT_EXCLUSIVE;
	}
	return MMN_EVENT_CLEAR;
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
	hdr = genlmsg_put(skb, 0, 0, mmn_family, 0, MMN_CMD_INVALIDATE);
	if (!hdr ||
	    nla_put_u64_64bit(skb, MMN_A_SEQ, b->seq, MMN_A_PAD) ||
	    nla_put_u32(skb, MMN_A_EVENT, uapi_event(range->event)) ||
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

	hdr = genlmsg_put(skb, 0, 0, mmn_family, 0, cmd);
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

int mmn_ev_invalidate_end(const struct mmn_batch *b)
{
	size_t sz = nla_total_size_64bit(sizeof(u64)) + nla_total_size(0) +
		    b->n * sub_size(false);
	struct sk_buff *skb;
	void *hdr;

	skb = genlmsg_new(sz, GFP_KERNEL);
	if (!skb)
		return -ENOMEM;
	hdr = genlmsg_put(skb, 0, 0, mmn_family, 0,
			  MMN_CMD_INVALIDATE_END);
	if (!hdr || nla_put_u64_64bit(skb, MMN_A_SEQ, b->seq, MMN_A_PAD) ||
	    put_subs(skb, b, false)) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return unicast(skb);
}

int mmn_ev_put_sub(struct sk_buff *skb, struct netlink_callback *cb,
		   const struct mmn_sub_info *info)
{
	void *hdr;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  mmn_family, NLM_F_MULTI, MMN_CMD_GET_SUBS);
	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_u32(skb, MMN_A_SUB_ID, info->id) ||
	    nla_put_u32(skb, MMN_A_PID, info->pid) ||
	    nla_put_u64_64bit(skb, MMN_A_START, info->start, MMN_A_PAD) ||
	    nla_put_u64_64bit(skb, MMN_A_LENGTH, info->length, MMN_A_PAD) ||
	    nla_put_u32(skb, MMN_A_SUB_FLAGS, info->flags) ||
	    nla_put_u32(skb, MMN_A_SUB_STATE, info->state) ||
	    nla_put_u32(skb, MMN_A_TIMEOUT_MS, info->timeout_ms)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}
