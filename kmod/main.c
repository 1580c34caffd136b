// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: mmu interval notifiers for user space, over generic netlink.
 * Module init and exit.  The files, from the daemon's requests down:
 *
 *   genl.c       the generic-netlink family: BIND, SUBSCRIBE, ACK ...
 *   subscribe.c  SUBSCRIBE, SET_FLAGS, GET_SUBS: a subscription's life
 *   walk.c       the invalidate callback: gather, wait, hand-off
 *   batch.c      what one invalidation reports; its INVALIDATE_END work
 *   sub.c        subscription objects: id table, per-mm groups, removal
 *   wait.c       threads waiting for an ACK, and the ACK that frees them
 *   event.c      kernel -> daemon messages
 *   core.c       module-wide state and parameters
 *
 * Each file calls only files below it in this list.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/rcupdate.h>
#include <net/genetlink.h>

#include "core.h"
#include "genl.h"
#include "sub.h"

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
MODULE_VERSION(MMN_VERSION);
MODULE_ALIAS_GENL_FAMILY(MMN_GENL_NAME);
