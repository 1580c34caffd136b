// SPDX-License-Identifier: GPL-2.0
/*
 * mmn: subscription objects: allocation, the per-mm groups, the id table,
 * references and removal.
 *
 * A subscription is allocated (mmn_sub_alloc), linked into the group of its
 * mm (mmn_sub_link), inserted as a notifier by SUBSCRIBE (subscribe.c), then
 * published under an id and made LIVE (mmn_sub_publish).  It ends DYING
 * (mmn_sub_kill_locked: UNSUBSCRIBE, daemon gone, failed SUBSCRIBE) and is
 * removed by a worker when its last reference goes (mmn_sub_put), since
 * mmu_interval_notifier_remove() waits for its callbacks.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/lockdep.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <net/netlink.h>

#include "batch.h"
#include "core.h"
#include "event.h"
#include "sub.h"
#include "wait.h"

DEFINE_XARRAY_ALLOC1(mmn_subs);
/*
 * Cyclic cursor of mmn_subs (under mmn_ctl_mutex): ids are handed out in
 * increasing order and wrap only after 2^32 - 1 of them, so an id is not
 * reused right after its UNSUBSCRIBE and a late REVOKED/RELEASE or
 * INVALIDATE_END for an old id cannot be taken for a new subscription.
 */
static u32 mmn_subs_next;
/* Every group; under mmn_ctl_mutex. */
static LIST_HEAD(mmn_groups);
/* Subscriptions counted against max_subs (not yet DYING). */
static atomic_t mmn_nsubs = ATOMIC_INIT(0);
/* Subscription objects not yet freed; module exit waits for zero. */
static atomic_t mmn_objs = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(mmn_objs_wq);

unsigned int mmn_sub_count(void)
{
	return atomic_read(&mmn_nsubs);
}

static struct mmn_group *group_get_locked(struct mm_struct *mm)
{
	struct mmn_group *g;

	lockdep_assert_held(&mmn_ctl_mutex);
	list_for_each_entry(g, &mmn_groups, node) {
		if (g->mm == mm) {
			g->refs++;
			return g;
		}
	}
	g = kzalloc(sizeof(*g), GFP_KERNEL_ACCOUNT);
	if (!g)
		return NULL;
	g->mm = mm;
	g->refs = 1;
	spin_lock_init(&g->lock);
	INIT_LIST_HEAD(&g->subs);
	list_add(&g->node, &mmn_groups);
	return g;
}

static void group_put_locked(struct mmn_group *g)
{
	lockdep_assert_held(&mmn_ctl_mutex);
	if (--g->refs)
		return;
	list_del(&g->node);
	kfree(g);
}

static void unlink_sub(struct mmn_sub *sub)
{
	struct mmn_group *g = sub->group;

	mutex_lock(&mmn_ctl_mutex);
	spin_lock(&g->lock);
	list_del(&sub->node);
	g->nsubs--;
	spin_unlock(&g->lock);
	group_put_locked(g);
	mutex_unlock(&mmn_ctl_mutex);
	nlmsg_free(sub->lost);
	kfree(sub);
	if (atomic_dec_and_test(&mmn_objs))
		wake_up_all(&mmn_objs_wq);
}

/* Last reference: only ever dropped in a worker (never in a callback). */
static void sub_release(struct kref *ref)
{
	struct mmn_sub *sub = container_of(ref, struct mmn_sub, ref);

	/* waits for every callback of this notifier; none will follow */
	mmu_interval_notifier_remove(&sub->notifier);
	unlink_sub(sub);
}

void mmn_sub_put(struct mmn_sub *sub)
{
	kref_put(&sub->ref, sub_release);
}

static void remove_work(struct work_struct *work)
{
	mmn_sub_put(container_of(work, struct mmn_sub, remove_work));
}

/*
 * A NEW subscription with its lost-event fallback (filled once the id is
 * known), not linked anywhere yet; NULL when memory is short.
 */
struct mmn_sub *mmn_sub_alloc(void)
{
	struct mmn_sub *sub;

	sub = kzalloc(sizeof(*sub), GFP_KERNEL_ACCOUNT);
	if (!sub)
		return NULL;
	sub->lost = mmn_ev_lost_alloc(GFP_KERNEL_ACCOUNT);
	if (!sub->lost) {
		kfree(sub);
		return NULL;
	}
	sub->state = MMN_SUB_NEW;
	kref_init(&sub->ref);
	INIT_WORK(&sub->remove_work, remove_work);
	return sub;
}

/* Free a subscription that mmn_sub_link() did not take. */
void mmn_sub_free_new(struct mmn_sub *sub)
{
	nlmsg_free(sub->lost);
	kfree(sub);
}

/*
 * Link sub into the group of mm, counted against max_subs, while a daemon is
 * bound; *gen: that daemon's binding, for mmn_sub_publish().  On error sub
 * is untouched (the caller frees it with mmn_sub_free_new()).
 */
int mmn_sub_link(struct mmn_sub *sub, struct mm_struct *mm, u32 timeout_ms,
		 struct netlink_ext_ack *extack, u64 *gen)
{
	struct mmn_group *g;
	int ret = 0;

	mutex_lock(&mmn_ctl_mutex);
	if (!mmn_daemon.bound) {
		ret = -ENOTCONN;
		goto out;
	}
	if (atomic_read(&mmn_nsubs) >= READ_ONCE(mmn_max_subs)) {
		NL_SET_ERR_MSG(extack, "too many subscriptions (module parameter max_subs)");
		ret = -ENOSPC;
		goto out;
	}
	g = group_get_locked(mm);
	if (!g) {
		ret = -ENOMEM;
		goto out;
	}
	sub->timeout_ms = timeout_ms ? timeout_ms : mmn_daemon.timeout_ms;
	sub->group = g;
	*gen = mmn_daemon.gen;
	spin_lock(&g->lock);
	list_add_tail(&sub->node, &g->subs);
	g->nsubs++;
	spin_unlock(&g->lock);
	atomic_inc(&mmn_nsubs);
	atomic_inc(&mmn_objs);
out:
	mutex_unlock(&mmn_ctl_mutex);
	return ret;
}

/* The notifier of a linked sub could not be inserted: undo the link. */
void mmn_sub_unlink_new(struct mmn_sub *sub)
{
	atomic_dec(&mmn_nsubs);
	unlink_sub(sub);
}

/* Stop reporting sub and queue its removal.  mmn_ctl_mutex held. */
void mmn_sub_kill_locked(struct mmn_sub *sub)
{
	struct mmn_group *g = sub->group;

	lockdep_assert_held(&mmn_ctl_mutex);
	spin_lock(&g->lock);
	sub->state = MMN_SUB_DYING;
	mmn_wait_recheck(g);
	spin_unlock(&g->lock);
	atomic_dec(&mmn_nsubs);
	queue_work(mmn_wq, &sub->remove_work);
}

/*
 * Give an inserted sub its id and make it LIVE, unless the daemon of
 * mmn_sub_link() is gone or the target exited meanwhile.  On error sub is
 * killed (its removal queued).  *idp: the id, read while sub cannot go
 * away (an unbind right after may free it).
 */
int mmn_sub_publish(struct mmn_sub *sub, u64 gen, bool armed,
		    struct netlink_ext_ack *extack, u32 *idp)
{
	struct mmn_group *g = sub->group;
	int ret;

	mutex_lock(&mmn_ctl_mutex);
	if (!mmn_daemon.bound || mmn_daemon.gen != gen) {
		ret = -ENOTCONN;
		goto out_kill;
	}
	/* 1: the cursor wrapped, which is fine */
	ret = xa_alloc_cyclic(&mmn_subs, &sub->id, sub, xa_limit_32b,
			      &mmn_subs_next, GFP_KERNEL);
	if (ret < 0)
		goto out_kill;
	/* before LIVE: nothing sends it earlier */
	ret = mmn_ev_lost_fill(sub->lost, sub->id);
	if (ret)
		goto out_erase;
	spin_lock(&g->lock);
	if (sub->state == MMN_SUB_RELEASED) {
		spin_unlock(&g->lock);
		NL_SET_ERR_MSG(extack, "the process exited");
		ret = -ESRCH;
		goto out_erase;
	}
	sub->state = MMN_SUB_LIVE;
	sub->armed |= armed;
	*idp = sub->id;
	spin_unlock(&g->lock);
	mutex_unlock(&mmn_ctl_mutex);
	return 0;

out_erase:
	xa_erase(&mmn_subs, sub->id);
out_kill:
	mmn_sub_kill_locked(sub);
	mutex_unlock(&mmn_ctl_mutex);
	return ret;
}

/* From the INVALIDATE_END worker: the batch's pointers are stale, use ids. */
void mmn_sub_desync_ids(const struct mmn_batch *b)
{
	unsigned int i;

	mutex_lock(&mmn_ctl_mutex);
	for (i = 0; i < b->n; i++) {
		struct mmn_sub *s = xa_load(&mmn_subs, b->ent[i].id);

		if (!s)
			continue;
		spin_lock(&s->group->lock);
		s->desync = true;
		spin_unlock(&s->group->lock);
	}
	mutex_unlock(&mmn_ctl_mutex);
	for (i = 0; i < b->n; i++)
		mmn_ev_revoked(b->ent[i].id, MMN_REVOKE_DESYNC, GFP_KERNEL);
}

/* Module exit: every subscription removed and freed (workers done). */
void mmn_sub_wait_all_gone(void)
{
	wait_event(mmn_objs_wq, !atomic_read(&mmn_objs));
}
