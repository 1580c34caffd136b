// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: the generic-netlink control plane.
 *
 * Every op is GENL_ADMIN_PERM (CAP_NET_ADMIN on socket and sender) and
 * pre_doit adds CAP_SYS_ADMIN: a subscription lets the daemon stall another
 * process's page-table changes.  Doits run in the sender's context
 * (parallel_ops: no genl_mutex), so `current` is the daemon.  No printk on
 * any of these paths: errors go back as errno + extack, and are counted.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/version.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/netlink.h>

#include "core.h"
#include "event.h"
#include "genl.h"
#include "sub.h"
#include "subscribe.h"
#include "wait.h"

#define MMN_TIMEOUT_POLICY	NLA_POLICY_RANGE(NLA_U32, 1, MMN_ACK_TIMEOUT_MAX_MS)

static const struct nla_policy bind_policy[MMN_A_MAX + 1] = {
	[MMN_A_TIMEOUT_MS] = MMN_TIMEOUT_POLICY,
};

static const struct nla_policy subscribe_policy[MMN_A_MAX + 1] = {
	[MMN_A_PID] = { .type = NLA_U32 },
	[MMN_A_START] = { .type = NLA_U64 },
	[MMN_A_LENGTH] = { .type = NLA_U64 },
	[MMN_A_SUB_FLAGS] = { .type = NLA_U32 },
	[MMN_A_TIMEOUT_MS] = MMN_TIMEOUT_POLICY,
};

static const struct nla_policy sub_id_policy[MMN_A_MAX + 1] = {
	[MMN_A_SUB_ID] = { .type = NLA_U32 },
};

static const struct nla_policy set_flags_policy[MMN_A_MAX + 1] = {
	[MMN_A_SUB_ID] = { .type = NLA_U32 },
	[MMN_A_SUB_FLAGS] = { .type = NLA_U32 },
};

static const struct nla_policy ack_policy[MMN_A_MAX + 1] = {
	[MMN_A_SEQ] = { .type = NLA_U64 },
};

static bool from_daemon(u32 portid)
{
	return READ_ONCE(mmn_daemon.bound) &&
	       READ_ONCE(mmn_daemon.portid) == portid;
}

static int check_sender(u32 portid, u8 cmd, struct netlink_ext_ack *extack)
{
	if (!capable(CAP_SYS_ADMIN)) {
		NL_SET_ERR_MSG(extack, "CAP_SYS_ADMIN is required");
		goto reject;
	}
	if (cmd != MMN_CMD_BIND && !from_daemon(portid)) {
		NL_SET_ERR_MSG(extack, "only the bound daemon may do this");
		goto reject;
	}
	return 0;
reject:
	mmn_count(MMN_STATS_A_BAD_REQUESTS);
	return -EPERM;
}

/* Since 6.2 the family's pre_doit gets the split op of the command. */
#if KERNEL_VERSION(6, 2, 0) <= LINUX_VERSION_CODE
static int pre_doit(const struct genl_split_ops *ops, struct sk_buff *skb,
		    struct genl_info *info)
#else
static int pre_doit(const struct genl_ops *ops, struct sk_buff *skb,
		    struct genl_info *info)
#endif
{
	return check_sender(info->snd_portid, ops->cmd, info->extack);
}

/* Mark the daemon gone, release every waiter, remove every subscription. */
static void unbind_locked(void)
{
	lockdep_assert_held(&mmn_ctl_mutex);
	WRITE_ONCE(mmn_daemon.bound, false);
	mmn_daemon.gen++;
	mmn_sub_teardown_all();
	WRITE_ONCE(mmn_daemon.portid, 0);
	WRITE_ONCE(mmn_daemon.tgid, 0);
}

static int bind_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *t = info->attrs[MMN_A_TIMEOUT_MS];

	mutex_lock(&mmn_ctl_mutex);
	if (mmn_daemon.bound) {
		mutex_unlock(&mmn_ctl_mutex);
		GENL_SET_ERR_MSG(info, "a daemon is already bound");
		return -EBUSY;
	}
	mmn_daemon.timeout_ms = t ? nla_get_u32(t) :
			       READ_ONCE(mmn_default_ack_timeout_ms);
	mmn_daemon.gen++;
	WRITE_ONCE(mmn_daemon.portid, info->snd_portid);
	WRITE_ONCE(mmn_daemon.tgid, current->tgid);
	/* readers check bound first: publish it last */
	smp_wmb();
	WRITE_ONCE(mmn_daemon.bound, true);
	mutex_unlock(&mmn_ctl_mutex);
	return 0;
}

static int unbind_doit(struct sk_buff *skb, struct genl_info *info)
{
	mutex_lock(&mmn_ctl_mutex);
	if (from_daemon(info->snd_portid))
		unbind_locked();
	mutex_unlock(&mmn_ctl_mutex);
	return 0;
}

static u32 get_u32(struct genl_info *info, int attr, u32 def)
{
	return info->attrs[attr] ? nla_get_u32(info->attrs[attr]) : def;
}

static int subscribe_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct sk_buff *msg;
	void *hdr;
	u32 id;
	int ret;

	if (GENL_REQ_ATTR_CHECK(info, MMN_A_PID) ||
	    GENL_REQ_ATTR_CHECK(info, MMN_A_START) ||
	    GENL_REQ_ATTR_CHECK(info, MMN_A_LENGTH)) {
		mmn_count(MMN_STATS_A_BAD_REQUESTS);
		return -EINVAL;
	}
	msg = genlmsg_new(nla_total_size(sizeof(u32)), GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	ret = mmn_sub_create(nla_get_u32(info->attrs[MMN_A_PID]),
			     nla_get_u64(info->attrs[MMN_A_START]),
			     nla_get_u64(info->attrs[MMN_A_LENGTH]),
			     get_u32(info, MMN_A_SUB_FLAGS, 0),
			     get_u32(info, MMN_A_TIMEOUT_MS, 0),
			     info->extack, &id);
	if (ret) {
		if (ret != -ENOMEM && ret != -ENOTCONN)
			mmn_count(MMN_STATS_A_BAD_REQUESTS);
		nlmsg_free(msg);
		return ret;
	}
	hdr = genlmsg_put_reply(msg, info, &mmn_genl_family, 0,
				MMN_CMD_SUBSCRIBE);
	if (!hdr || nla_put_u32(msg, MMN_A_SUB_ID, id)) {
		/* cannot happen: the message was sized for this */
		nlmsg_free(msg);
		mmn_sub_unsubscribe(id);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, hdr);
	ret = genlmsg_reply(msg, info);
	if (ret) {
		/*
		 * The daemon will never learn the id (its receive queue is
		 * full: -EAGAIN): do not leave an orphan that would keep
		 * BLOCKING and refusing the OOM reaper.  Removed the way
		 * UNSUBSCRIBE does it; the id may have been listed in events
		 * already, which the daemon ignores as unknown.
		 */
		mmn_sub_unsubscribe(id);
	}
	return ret;
}

static int unsubscribe_doit(struct sk_buff *skb, struct genl_info *info)
{
	int ret;

	if (GENL_REQ_ATTR_CHECK(info, MMN_A_SUB_ID)) {
		mmn_count(MMN_STATS_A_BAD_REQUESTS);
		return -EINVAL;
	}
	ret = mmn_sub_unsubscribe(nla_get_u32(info->attrs[MMN_A_SUB_ID]));
	if (ret) {
		mmn_count(MMN_STATS_A_BAD_REQUESTS);
		GENL_SET_ERR_MSG(info, "no such subscription");
	}
	return ret;
}

static int set_flags_doit(struct sk_buff *skb, struct genl_info *info)
{
	int ret;

	if (GENL_REQ_ATTR_CHECK(info, MMN_A_SUB_ID) ||
	    GENL_REQ_ATTR_CHECK(info, MMN_A_SUB_FLAGS)) {
		mmn_count(MMN_STATS_A_BAD_REQUESTS);
		return -EINVAL;
	}
	ret = mmn_sub_set_flags(nla_get_u32(info->attrs[MMN_A_SUB_ID]),
				nla_get_u32(info->attrs[MMN_A_SUB_FLAGS]),
				info->extack);
	if (ret)
		mmn_count(MMN_STATS_A_BAD_REQUESTS);
	return ret;
}

static int ack_doit(struct sk_buff *skb, struct genl_info *info)
{
	int ret;

	if (GENL_REQ_ATTR_CHECK(info, MMN_A_SEQ)) {
		mmn_count(MMN_STATS_A_BAD_REQUESTS);
		return -EINVAL;
	}
	ret = mmn_wait_ack(nla_get_u64(info->attrs[MMN_A_SEQ]));
	if (ret)
		GENL_SET_ERR_MSG(info, "nobody waits for this seq (late or duplicate ack)");
	return ret;
}

static int get_stats_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *nest;
	struct sk_buff *msg;
	void *hdr;
	int i;

	msg = genlmsg_new(nla_total_size(0) +
			  MMN_STATS_A_MAX * nla_total_size_64bit(sizeof(u64)),
			  GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	hdr = genlmsg_put_reply(msg, info, &mmn_genl_family, 0,
				MMN_CMD_GET_STATS);
	if (!hdr)
		goto nospace;
	nest = nla_nest_start(msg, MMN_A_STATS);
	if (!nest)
		goto nospace;
	for (i = MMN_STATS_A_SUBS; i <= MMN_STATS_A_MAX; i++) {
		u64 v = i == MMN_STATS_A_SUBS ? mmn_sub_count() :
			atomic64_read(&mmn_stats[i]);

		if (nla_put_u64_64bit(msg, i, v, MMN_STATS_A_PAD))
			goto nospace;
	}
	nla_nest_end(msg, nest);
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
nospace:
	nlmsg_free(msg);
	return -EMSGSIZE;
}

/* Dumps never go through the family's pre_doit: check the sender here. */
static int get_subs_start(struct netlink_callback *cb)
{
	return check_sender(NETLINK_CB(cb->skb).portid, MMN_CMD_GET_SUBS,
			    cb->extack);
}

static const struct genl_ops mmn_genl_ops[] = {
	{
		.cmd = MMN_CMD_BIND,
		.doit = bind_doit,
		.policy = bind_policy,
		.maxattr = MMN_A_MAX,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_UNBIND,
		.doit = unbind_doit,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_SUBSCRIBE,
		.doit = subscribe_doit,
		.policy = subscribe_policy,
		.maxattr = MMN_A_MAX,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_UNSUBSCRIBE,
		.doit = unsubscribe_doit,
		.policy = sub_id_policy,
		.maxattr = MMN_A_MAX,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_SET_FLAGS,
		.doit = set_flags_doit,
		.policy = set_flags_policy,
		.maxattr = MMN_A_MAX,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_ACK,
		.doit = ack_doit,
		.policy = ack_policy,
		.maxattr = MMN_A_MAX,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_GET_SUBS,
		.start = get_subs_start,
		.dumpit = mmn_sub_dump,
		.flags = GENL_ADMIN_PERM,
	}, {
		.cmd = MMN_CMD_GET_STATS,
		.doit = get_stats_doit,
		.flags = GENL_ADMIN_PERM,
	},
};

struct genl_family mmn_genl_family __ro_after_init = {
	.name = MMN_GENL_NAME,
	.version = MMN_GENL_VERSION,
	.module = THIS_MODULE,
	.ops = mmn_genl_ops,
	.n_ops = ARRAY_SIZE(mmn_genl_ops),
	.resv_start_op = 0,	/* strict validation for every command */
	.parallel_ops = true,	/* own locking; see core.h */
	.netnsok = false,	/* init_net only */
	.pre_doit = pre_doit,
};

/* The daemon's socket went away (exit, crash, close): it is gone. */
static int netlink_notify(struct notifier_block *nb, unsigned long event,
			  void *ptr)
{
	struct netlink_notify *n = ptr;

	if (event != NETLINK_URELEASE || n->protocol != NETLINK_GENERIC ||
	    !net_eq(n->net, &init_net))
		return NOTIFY_DONE;
	/*
	 * Every generic-netlink socket of init_net that closes comes here, any
	 * user's: do not queue them all on mmn_ctl_mutex (held across
	 * GFP_KERNEL allocations).  A lockless look is enough to skip a port
	 * that is not the daemon's: the daemon's port cannot be released while
	 * it binds, so if it is ours, bound and portid were published (under
	 * the mutex, before its BIND returned) before this release; recheck
	 * under the mutex.
	 */
	if (!READ_ONCE(mmn_daemon.bound) ||
	    READ_ONCE(mmn_daemon.portid) != n->portid)
		return NOTIFY_DONE;
	mutex_lock(&mmn_ctl_mutex);
	if (mmn_daemon.bound && mmn_daemon.portid == n->portid)
		unbind_locked();
	mutex_unlock(&mmn_ctl_mutex);
	return NOTIFY_DONE;
}

static struct notifier_block mmn_netlink_nb = {
	.notifier_call = netlink_notify,
};

int mmn_genl_init(void)
{
	int ret;

	mmn_ev_init(&mmn_genl_family);
	ret = netlink_register_notifier(&mmn_netlink_nb);
	if (ret)
		return ret;
	ret = genl_register_family(&mmn_genl_family);
	if (ret)
		netlink_unregister_notifier(&mmn_netlink_nb);
	return ret;
}

/*
 * No doit runs after genl_unregister_family() returns; then drop the
 * binding, which releases every waiter and queues every removal.
 */
void mmn_genl_exit(void)
{
	genl_unregister_family(&mmn_genl_family);
	netlink_unregister_notifier(&mmn_netlink_nb);
	mutex_lock(&mmn_ctl_mutex);
	if (mmn_daemon.bound)
		unbind_locked();
	mutex_unlock(&mmn_ctl_mutex);
}
