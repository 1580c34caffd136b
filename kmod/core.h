/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: module-wide state shared by every file: the bound daemon, the
 * statistics counters, the module parameters and the workqueue.
 */
#ifndef MMN_CORE_H
#define MMN_CORE_H

#include <linux/atomic.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <linux/workqueue.h>
#include <linux/mmn.h>

/*
 * The bound daemon.  Written under mmn_ctl_mutex (BIND, UNBIND, socket
 * release); read locklessly (READ_ONCE) by the invalidate path, which only
 * needs a consistent snapshot: an event sent to a port that has just gone
 * away fails with -ECONNREFUSED and is counted.
 */
struct mmn_daemon {
	bool bound;
	u32 portid;
	pid_t tgid;		/* thread group of the binder: never wait on it */
	u32 timeout_ms;		/* default ack timeout for new subscriptions */
	u64 gen;		/* bumped on every bind and unbind */
};

extern struct mmn_daemon mmn_daemon;
/*
 * Serialises the control plane (bind state, the id xarray, the group list).
 * Never taken in .invalidate or by ACK, never held across
 * mmu_interval_notifier_insert/remove, get_task_mm or mmput.
 */
extern struct mutex mmn_ctl_mutex;
extern struct workqueue_struct *mmn_wq;

extern unsigned int mmn_max_ack_timeout_ms;
extern unsigned int mmn_default_ack_timeout_ms;
extern unsigned int mmn_max_subs;

extern atomic64_t mmn_stats[__MMN_STATS_A_MAX];

/*
 * Test knob (module parameter fail_event_alloc, 0 = off, the default; only
 * in a module built with MMN_TEST_KNOBS=y): the next N allocations of the
 * invalidate path's messages fail as if memory were short, so the guest
 * tests can reach the lost-event fallback.
 */
#ifdef MMN_TEST_KNOBS
extern atomic_t mmn_fail_event_alloc;

static inline bool mmn_fail_alloc(void)
{
	return unlikely(atomic_read(&mmn_fail_event_alloc) > 0) &&
	       atomic_dec_if_positive(&mmn_fail_event_alloc) >= 0;
}
#else
static inline bool mmn_fail_alloc(void)
{
	return false;
}
#endif

static inline void mmn_count(int stat)
{
	atomic64_inc(&mmn_stats[stat]);
}

static inline unsigned int mmn_clamp_timeout(unsigned int ms)
{
	unsigned int cap = READ_ONCE(mmn_max_ack_timeout_ms);

	if (!ms)
		ms = 1;
	return ms < cap ? ms : cap;
}

#endif /* MMN_CORE_H */
