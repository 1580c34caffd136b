// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: the module-wide state shared by every file (declared in core.h) and
 * the module parameters.  The test knob fail_event_alloc exists only in a
 * module built with MMN_TEST_KNOBS=y (Kbuild): never in a release build.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/moduleparam.h>
#include <linux/stringify.h>
#include <linux/sysfs.h>

#include "core.h"

struct mmn_daemon mmn_daemon;
DEFINE_MUTEX(mmn_ctl_mutex);
struct workqueue_struct *mmn_wq;
atomic64_t mmn_stats[__MMN_STATS_A_MAX];
#ifdef MMN_TEST_KNOBS
atomic_t mmn_fail_event_alloc = ATOMIC_INIT(0);
#endif

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
	return set_bounded(val, kp, MMN_ACK_TIMEOUT_MAX_MS);
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

module_param_cb(max_ack_timeout_ms, &timeout_ops, &mmn_max_ack_timeout_ms, 0644);
MODULE_PARM_DESC(max_ack_timeout_ms,
		 "cap on every ack wait in ms (1.."
		 __stringify(MMN_ACK_TIMEOUT_MAX_MS) ", default 2000)");
module_param_cb(default_ack_timeout_ms, &timeout_ops,
		&mmn_default_ack_timeout_ms, 0644);
MODULE_PARM_DESC(default_ack_timeout_ms,
		 "ack timeout when neither BIND nor SUBSCRIBE gives one (default 1000)");
module_param_cb(max_subs, &max_subs_ops, &mmn_max_subs, 0644);
MODULE_PARM_DESC(max_subs, "most subscriptions at a time (default 4096)");

#ifdef MMN_TEST_KNOBS
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

module_param_cb(fail_event_alloc, &fail_ops, &mmn_fail_event_alloc, 0600);
MODULE_PARM_DESC(fail_event_alloc,
		 "test knob: fail the next N event allocations (default 0: off)");
#endif /* MMN_TEST_KNOBS */
