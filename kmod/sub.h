/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: subscription objects (one mmu_interval_notifier each), the per-mm
 * group that lets one invalidation of an mm produce one event, the id table
 * and the removal of a subscription.
 */
#ifndef MMN_SUB_H
#define MMN_SUB_H

#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mmu_notifier.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

/* Concurrent multi-subscription walks tracked per mm (see walk.c). */
#define MMN_WALKS	16

/*
 * A walk is one call of the core mm's interval-tree walk for one
 * invalidation on one thread: it calls our .invalidate once per overlapping
 * subscription, one after the other, on that thread.  The first callback of
 * the walk (the gatherer) reports every subscription it covers and records
 * here how many of their callbacks are still to come.
 */
struct mmn_walk {
	/*
	 * NULL: slot free.  May be a stale pointer after that task exited
	 * (the slot of a walk cut short is only freed by a later callback of
	 * the same thread on this mm): compared only, never dereferenced.
	 */
	struct task_struct *task;
	const struct mmu_notifier_range *range;
	unsigned long cur_seq;
	unsigned long start, end;
	int event;
	const struct mmn_sub *gatherer;		/* compared, never dereferenced */
	unsigned int pending;
};

/*
 * All subscriptions of one mm.  Lifetime: one reference per subscription
 * (taken at SUBSCRIBE, dropped after mmu_interval_notifier_remove()); the
 * 1 -> 0 transition and the list of groups are under mmn_ctl_mutex.  The
 * mm pointer is a lookup key only: every subscription's notifier holds
 * mmgrab() on it, so it cannot be reused while the group exists.
 */
struct mmn_group {
	struct list_head node;			/* mmn_groups */
	struct mm_struct *mm;
	unsigned int refs;			/* under mmn_ctl_mutex */
	/*
	 * The lock of every subscription of this mm, and the only lock the
	 * invalidate path takes besides mmn_wait_lock (nested inside).  Protects
	 * subs, nsubs, walks and every subscription's state, flags, desync,
	 * armed and cover.
	 */
	spinlock_t lock;
	struct list_head subs;
	unsigned int nsubs;
	struct mmn_walk walks[MMN_WALKS];
};

enum mmn_sub_st {
	MMN_SUB_NEW,		/* being inserted: not reported yet */
	MMN_SUB_LIVE,
	MMN_SUB_RELEASED,	/* target mm exited */
	MMN_SUB_DYING,		/* unsubscribed or daemon gone; removal queued */
};

struct mmn_sub {
	struct mmu_interval_notifier notifier;	/* .mm valid until remove() */
	struct mmn_group *group;
	struct list_head node;			/* group->subs, under group->lock */
	u32 id;					/* xarray key; 0 until published */
	u32 pid;				/* as given by the daemon, for reports */
	unsigned long start, last;		/* inclusive, like the interval tree */
	u32 timeout_ms;
	/* under group->lock: */
	enum mmn_sub_st state;
	u32 flags;				/* MMN_SUB_F_BLOCKING */
	bool desync;
	bool armed;				/* known to be in the mm's interval tree */
	u32 cover;				/* bit i: walks[i] already reported us */
	/*
	 * The lost-event fallback: a prebuilt REVOKED(DESYNC) for this id
	 * (allocated at SUBSCRIBE, GFP_KERNEL_ACCOUNT), taken (set to NULL)
	 * under group->lock by whoever sends it when the normal message
	 * cannot be allocated, re-armed by SET_FLAGS(RESYNCED) in process
	 * context, freed with the subscription.  NULL: already used; the
	 * subscription is DESYNC and the daemon was told.
	 */
	struct sk_buff *lost;
	/*
	 * References: one for the subscription itself (dropped by the remove
	 * work after DYING), one per queued INVALIDATE_END work.  The last put
	 * calls mmu_interval_notifier_remove(), so it happens in a worker.
	 */
	struct kref ref;
	struct work_struct remove_work;
};

/*
 * id -> published subscription (LIVE or RELEASED, not yet DYING).  Changed
 * under mmn_ctl_mutex; read under it too, since an entry is only freed
 * after it was erased under the mutex.
 */
extern struct xarray mmn_subs;

struct mm_struct;
struct mmn_batch;
struct netlink_ext_ack;

struct mmn_sub *mmn_sub_alloc(void);
void mmn_sub_free_new(struct mmn_sub *sub);
int mmn_sub_link(struct mmn_sub *sub, struct mm_struct *mm, u32 timeout_ms,
		 struct netlink_ext_ack *extack, u64 *gen);
void mmn_sub_unlink_new(struct mmn_sub *sub);
int mmn_sub_publish(struct mmn_sub *sub, u64 gen, bool armed,
		    struct netlink_ext_ack *extack, u32 *idp);
void mmn_sub_kill_locked(struct mmn_sub *sub);
void mmn_sub_put(struct mmn_sub *sub);
void mmn_sub_desync_ids(const struct mmn_batch *b);
unsigned int mmn_sub_count(void);
void mmn_sub_wait_all_gone(void);

#endif /* MMN_SUB_H */
