// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: the daemon's requests on subscriptions.
 *
 * SUBSCRIBE goes in four steps: check the arguments, find the target's mm,
 * link a new subscription into the mm's group (sub.c), insert its notifier
 * (with no lock of ours held: insert may take the target's mmap_lock), and
 * publish it under an id.  The daemon's requests run in its own context
 * (generic netlink doits), so they may sleep.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/lockdep.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/overflow.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <net/genetlink.h>

#include "core.h"
#include "event.h"
#include "sub.h"
#include "subscribe.h"
#include "wait.h"
#include "walk.h"

static int check_args(unsigned long start, unsigned long len, u32 flags,
		      struct netlink_ext_ack *extack, unsigned long *end)
{
	if (!len) {
		NL_SET_ERR_MSG(extack, "length is zero");
		return -EINVAL;
	}
	if (!PAGE_ALIGNED(start) || !PAGE_ALIGNED(len)) {
		NL_SET_ERR_MSG(extack, "start and length must be page aligned");
		return -EINVAL;
	}
	if (check_add_overflow(start, len, end)) {
		NL_SET_ERR_MSG(extack, "start + length overflows");
		return -EOVERFLOW;
	}
	if (flags & ~__MMN_SUB_F_ALL) {
		NL_SET_ERR_MSG(extack, "unknown subscription flags");
		return -EOPNOTSUPP;
	}
	if (flags & MMN_SUB_F_RESYNCED) {
		NL_SET_ERR_MSG(extack, "RESYNCED is only valid in SET_FLAGS");
		return -EINVAL;
	}
	return 0;
}

/* The mm of thread group nr (a reference, or an ERR_PTR) if it may be watched. */
static struct mm_struct *target_mm(u32 nr, unsigned long end,
				   struct netlink_ext_ack *extack)
{
	struct task_struct *task = NULL;
	struct mm_struct *mm;
	struct pid *pid;

	pid = find_get_pid(nr);
	if (pid)
		task = get_pid_task(pid, PIDTYPE_TGID);
	put_pid(pid);
	if (!task) {
		NL_SET_ERR_MSG(extack, "no such process");
		return ERR_PTR(-ESRCH);
	}
	if (task->flags & PF_KTHREAD) {
		put_task_struct(task);
		NL_SET_ERR_MSG(extack, "kernel threads cannot be subscribed");
		return ERR_PTR(-EINVAL);
	}
	mm = get_task_mm(task);
	put_task_struct(task);
	if (!mm) {
		NL_SET_ERR_MSG(extack, "process has no address space");
		return ERR_PTR(-ESRCH);
	}
	if (mm == current->mm) {
		NL_SET_ERR_MSG(extack, "the daemon cannot subscribe its own address space");
		goto err;
	}
	if (end > mm->task_size) {
		NL_SET_ERR_MSG(extack, "range ends beyond the target's address space");
		goto err;
	}
	return mm;
err:
	/*
	 * Never mmput() synchronously here: if the target died meanwhile, the
	 * last put would run its exit_mmap() in the daemon, which could then
	 * wait on itself for an ACK.
	 */
	mmput_async(mm);
	return ERR_PTR(-EINVAL);
}

int mmn_sub_create(u32 nr, unsigned long start, unsigned long len, u32 flags,
		   u32 timeout_ms, struct netlink_ext_ack *extack, u32 *idp)
{
	struct mm_struct *mm;
	struct mmn_sub *sub;
	unsigned long end;
	bool armed;
	u64 gen;
	int ret;

	ret = check_args(start, len, flags, extack, &end);
	if (ret)
		return ret;
	mm = target_mm(nr, end, extack);
	if (IS_ERR(mm))
		return PTR_ERR(mm);
	ret = -ENOMEM;
	sub = mmn_sub_alloc();
	if (!sub)
		goto out_mm;
	sub->pid = nr;
	sub->start = start;
	sub->last = end - 1;
	sub->flags = flags;
	ret = mmn_sub_link(sub, mm, timeout_ms, extack, &gen);
	if (ret) {
		mmn_sub_free_new(sub);
		goto out_mm;
	}

	/* May take the target's mmap_lock: no lock of ours is held. */
	ret = mmu_interval_notifier_insert(&sub->notifier, mm, start, len,
					   &mmn_walk_ops);
	/*
	 * A deferred insert (an invalidation was running) leaves the rb node
	 * empty until that invalidation ends; a linked node never unlinks
	 * before remove().  So a stale "empty" only costs an extra event.
	 */
	armed = !ret && !RB_EMPTY_NODE(&sub->notifier.interval_tree.rb);
	/* the notifier holds the mm now; see target_mm() for why async */
	mmput_async(mm);
	if (ret) {
		mmn_sub_unlink_new(sub);
		return ret;
	}
	return mmn_sub_publish(sub, gen, armed, extack, idp);

out_mm:
	mmput_async(mm);
	return ret;
}

int mmn_sub_unsubscribe(u32 id)
{
	struct mmn_sub *sub;

	mutex_lock(&mmn_ctl_mutex);
	sub = xa_erase(&mmn_subs, id);
	if (sub)
		mmn_sub_kill_locked(sub);
	mutex_unlock(&mmn_ctl_mutex);
	return sub ? 0 : -ENOENT;
}

int mmn_sub_set_flags(u32 id, u32 flags, struct netlink_ext_ack *extack)
{
	struct sk_buff *lost = NULL;
	struct mmn_sub *sub;
	struct mmn_group *g;
	int ret = 0;

	if (flags & ~__MMN_SUB_F_ALL) {
		NL_SET_ERR_MSG(extack, "unknown subscription flags");
		return -EOPNOTSUPP;
	}
	if (flags & MMN_SUB_F_RESYNCED) {
		/* a fresh fallback, in case the old one was used (see walk.c) */
		lost = mmn_ev_lost_alloc(GFP_KERNEL_ACCOUNT);
		if (lost && mmn_ev_lost_fill(lost, id)) {
			nlmsg_free(lost);
			lost = NULL;
		}
	}
	mutex_lock(&mmn_ctl_mutex);
	sub = xa_load(&mmn_subs, id);
	if (!sub) {
		mutex_unlock(&mmn_ctl_mutex);
		nlmsg_free(lost);
		NL_SET_ERR_MSG(extack, "no such subscription");
		return -ENOENT;
	}
	g = sub->group;
	spin_lock(&g->lock);
	if (flags & MMN_SUB_F_RESYNCED) {
		if (!sub->lost)
			swap(sub->lost, lost);
		/*
		 * Without a fallback a later loss could go unnoticed: stay
		 * DESYNC.  The BLOCKING change still applies (clearing it is
		 * what lets the OOM reaper go on).
		 */
		if (sub->lost)
			sub->desync = false;
		else
			ret = -ENOMEM;
	}
	sub->flags = flags & MMN_SUB_F_BLOCKING;
	if (!sub->flags)
		mmn_wait_recheck(g);
	spin_unlock(&g->lock);
	mutex_unlock(&mmn_ctl_mutex);
	nlmsg_free(lost);
	if (ret)
		NL_SET_ERR_MSG(extack, "flags set, but DESYNC kept (out of memory): retry RESYNCED");
	return ret;
}

/* The daemon is gone (already marked unbound).  mmn_ctl_mutex held. */
void mmn_sub_teardown_all(void)
{
	struct mmn_sub *sub;
	unsigned long id;

	lockdep_assert_held(&mmn_ctl_mutex);
	mmn_wait_release_all();
	xa_for_each(&mmn_subs, id, sub) {
		xa_erase(&mmn_subs, id);
		mmn_sub_kill_locked(sub);
	}
}

struct mmn_dump_ctx {
	unsigned long next;
};

/* What GET_SUBS says about sub.  Its group->lock held. */
static void sub_info(const struct mmn_sub *sub, struct mmn_sub_info *info)
{
	lockdep_assert_held(&sub->group->lock);
	info->id = sub->id;
	info->pid = sub->pid;
	info->start = sub->start;
	info->length = sub->last + 1 - sub->start;
	info->state = sub->state == MMN_SUB_RELEASED ? MMN_SUB_ST_RELEASED :
		      sub->state == MMN_SUB_DYING ? MMN_SUB_ST_DYING :
		      MMN_SUB_ST_LIVE;
	if (sub->desync)
		info->state |= MMN_SUB_ST_DESYNC;
	info->flags = sub->flags;
	info->timeout_ms = sub->timeout_ms;
}

int mmn_sub_dump(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct mmn_dump_ctx *ctx = (void *)cb->ctx;
	struct mmn_sub_info info;
	struct mmn_sub *sub;
	unsigned long id;

	BUILD_BUG_ON(sizeof(*ctx) > sizeof(cb->ctx));
	mutex_lock(&mmn_ctl_mutex);
	xa_for_each_start(&mmn_subs, id, sub, ctx->next) {
		spin_lock(&sub->group->lock);
		sub_info(sub, &info);
		spin_unlock(&sub->group->lock);
		if (mmn_ev_put_sub(skb, cb, &info))
			break;
		ctx->next = id + 1;
	}
	mutex_unlock(&mmn_ctl_mutex);
	return skb->len;
}
