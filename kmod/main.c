// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: mmu interval notifiers for user space, over generic netlink.
 * Module init/exit, parameters and the module-wide state.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/rcupdate.h>
#include <net/genetlink.h>

#include "core.h"
#include "genl.h"
#include "sub.h"

struct mmn_daemon mmn_daemon;
DEFINE_MUTEX(mmn_ctl_mutex);
struct workqueue_struct *mmn_wq;
atomic64_t mmn_stats[__MMN_STATS_A_MAX];
atomic_t mmn_fail_event_alloc = ATOMIC_INIT(0);

/* Far below the hung-task limit (120 s): an unacked wait is uninterruptible. */
#define MMN_ACK_TIMEOUT_CAP_MS	10000

unsigned int mmn_max_ack_timeout_ms = 2000;
unsigned int mmn_default_ack_timeout_ms = 1000;
unsigned int mmn_max_subs = 4096;

static int set_bounded(const char *val, const struct kernel_param *kp,
		       unsigned int max)
{
	unsigned int v;
	int ret;

	ret = kstrtouint(val, 0, &v);
	if (ret)
		return ret;
	if (v < 1 || v > max)
		return -ERANGE;
	WRITE_ONCE(*(unsigned int *)kp->arg, v);
	return 0;
}

static int set_timeout(const char *val, const struct kernel_param *kp)
{
	return set_bounded(val, kp, MMN_ACK_TIMEOUT_CAP_MS);
}

static int set_max_subs(const char *val, const struct kernel_param *kp)
{
	return set_bounded(val, kp, 1U << 20);
}

static const struct kernel_param_ops timeout_ops = {
	.set = set_timeout,
	.get = param_get_uint,
};

static const struct kernel_param_ops max_subs_ops = {
	.set = set_max_subs,
	.get = param_get_uint,
};

static int set_fail(const char *val, const struct kernel_param *kp)
{
	unsigned int v;
	int ret;

	ret = kstrtouint(val, 0, &v);
	if (ret)
		return ret;
	if (v > INT_MAX)
		return -ERANGE;
	atomic_set(kp->arg, v);
	return 0;
}

static int get_fail(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops fail_ops = {
	.set = set_fail,
	.get = get_fail,
};

module_param_cb(max_ack_timeout_ms, &timeout_ops, &mmn_max_ack_timeout_ms, 0644);
MODULE_PARM_DESC(max_ack_timeout_ms,
		 "cap on every ack wait in ms (1..10000, default 2000)");
module_param_cb(default_ack_timeout_ms, &timeout_ops,
		&mmn_default_ack_timeout_ms, 0644);
MODULE_PARM_DESC(default_ack_timeout_ms,
		 "ack timeout when neither BIND nor SUBSCRIBE gives one (default 1000)");
module_param_cb(max_subs, &max_subs_ops, &mmn_max_subs, 0644);
MODULE_PARM_DESC(max_subs, "most subscriptions at a time (default 4096)");
module_param_cb(fail_event_alloc, &fail_ops, &mmn_fail_event_alloc, 0600);
MODULE_PARM_DESC(fail_event_alloc,
		 "test knob: fail the next N event allocations (default 0: off)");

static int __init mmn_init(void)
{
	int ret;

	mmn_wq = alloc_workqueue("mmn", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!mmn_wq)
		return -ENOMEM;
	ret = mmn_genl_init();
	if (ret)
		goto err_wq;
	return 0;

err_wq:
	destroy_workqueue(mmn_wq);
	return ret;
}

static void __exit mmn_exit(void)
{
	/* no doit after this; waiters released, removals queued */
	mmn_genl_exit();
	/*
	 * Every subscription's remove() has returned (no callback runs or will
	 * run) and every INVALIDATE_END work has finished: nothing can queue
	 * work any more.
	 */
	mmn_sub_wait_all_gone();
	destroy_workqueue(mmn_wq);
	rcu_barrier();
}

module_init(mmn_init);
module_exit(mmn_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("mmu interval notifiers for user space over generic netlink");
MODULE_AUTHOR("mmn developers");
MODULE_ALIAS_GENL_FAMILY(MMN_GENL_NAME);
