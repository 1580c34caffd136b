/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mmn: mmu interval notifiers for user space, over generic netlink.
 *
 * This header is the one definition of the "mmn" generic-netlink family.  The
 * module (kmod/) and the daemon (daemon/source/kmod*.c) both include it;
 * nothing redefines it.
 *
 * Model
 * -----
 * One privileged daemon BINDs (one at a time: a second BIND gets -EBUSY).
 * It then SUBSCRIBEs ranges [start, start + length) of target processes'
 * address spaces; the module inserts one mmu_interval_notifier per
 * subscription.  Every command needs CAP_NET_ADMIN (GENL_ADMIN_PERM) and
 * CAP_SYS_ADMIN in the init user namespace, works only in the initial
 * network namespace, and every command but BIND is accepted only from the
 * bound netlink port (-EPERM otherwise).
 *
 * When the kernel invalidates a range, the module unicasts one
 * MMN_CMD_INVALIDATE to the daemon per mm-level invalidation: every
 * subscription of that mm the invalidation touches is listed in one
 * message (MMN_A_SUBS), all share one MMN_A_SEQ, and there is one wait.
 *
 *   blockable, some listed subscription has MMN_SUB_F_BLOCKING:
 *     MMN_EV_F_NEEDS_ACK is set and the invalidating thread sleeps
 *     (uninterruptibly, bounded by the smallest listed timeout, itself clamped
 *     to the module parameter max_ack_timeout_ms) until the daemon sends
 *     MMN_CMD_ACK with that MMN_A_SEQ.  The kernel never fails a blockable
 *     invalidation: on timeout it proceeds, counts it and the affected
 *     subscriptions become MMN_SUB_ST_DESYNC.  It does not wait when the
 *     invalidating thread belongs to the daemon or when the event could not
 *     be sent.
 *   not blockable (OOM reaper):
 *     the event is sent with MMN_EV_F_BLOCKABLE clear and nobody waits.  The
 *     invalidation is refused (-EAGAIN to the reaper, which retries) when a
 *     listed subscription has MMN_SUB_F_BLOCKING: a blocking consumer
 *     holds device mappings.  The daemon clears the flag with SET_FLAGS once
 *     the consumers dropped them, so a retry succeeds.
 *
 * After each INVALIDATE the module sends MMN_CMD_INVALIDATE_END with the
 * same MMN_A_SEQ once the range is quiescent again (a worker learns this
 * from mmu_interval_read_begin()).  Every INVALIDATE is followed by exactly
 * one INVALIDATE_END, unless the subscriptions went away (REVOKED/RELEASE).
 *
 * When a target mm exits the module sends MMN_CMD_RELEASE for each of its
 * subscriptions; they are dead (later events on them are not sent) and the
 * daemon UNSUBSCRIBEs them.  When events could not be delivered (receive
 * buffer full) the subscription is marked MMN_SUB_ST_DESYNC and, when it can
 * be sent, MMN_CMD_REVOKED with MMN_REVOKE_DESYNC follows; the daemon
 * resynchronises its consumers and clears DESYNC with SET_FLAGS.
 *
 * If the daemon's socket closes (NETLINK_URELEASE) or it sends UNBIND, every
 * waiter is woken at once and every subscription is removed.
 *
 * Attributes are validated strictly: unknown attributes, wrong lengths and
 * unknown flag bits are rejected (-EINVAL / -EOPNOTSUPP, with an extack
 * message).  Subscription ids are u32 handles, never kernel pointers.
 *
 * Details of the implementation the daemon may rely on (kmod/, v1):
 * - A subscription is reported from the moment SUBSCRIBE has answered: an
 *   invalidation that runs while the notifier is being inserted is not
 *   reported (nothing can be mapped through an id the daemon does not know
 *   yet).  If the target exits during SUBSCRIBE the answer is -ESRCH.
 * - Kernel -> daemon messages have nlmsg_seq 0 and arrive on the bound
 *   socket, interleaved with the answers to its requests.
 * - SUBSCRIBE errors: -EINVAL (length 0, unaligned, end beyond the target's
 *   task size, kernel thread, the daemon's own mm, RESYNCED), -EOVERFLOW,
 *   -ESRCH (no such thread-group id), -EOPNOTSUPP (unknown flags), -ENOSPC
 *   (module parameter max_subs), -ERANGE (TIMEOUT_MS outside 1..MMN_ACK_TIMEOUT_MAX_MS).
 * - A wait also ends, without a timeout, when no listed subscription is
 *   LIVE and BLOCKING any more (UNSUBSCRIBE, SET_FLAGS without BLOCKING,
 *   RELEASE) and when the daemon goes away.
 * - INVALIDATE_END is sent only for an INVALIDATE that was delivered; a
 *   subscription may be listed in an INVALIDATE_END after its RELEASE.
 * - One invalidation normally gives one INVALIDATE.  A subscription comes in
 *   a further INVALIDATE (own seq, own wait) when more than 64 overlap, when
 *   it starts at the same address as another one, or the first time after
 *   it was subscribed while its mm was being invalidated.  No subscription
 *   is listed twice for one invalidation.
 * - Module parameters (/sys/module/mmn/parameters): max_ack_timeout_ms
 *   (1..MMN_ACK_TIMEOUT_MAX_MS, default 2000), default_ack_timeout_ms (used when neither BIND
 *   nor SUBSCRIBE gives TIMEOUT_MS, default 1000), max_subs (default 4096).
 *   fail_event_alloc (root only, default 0) is a test knob, only in a
 *   module built with MMN_TEST_KNOBS=y (the tests' build): the next N
 *   message allocations of the invalidate path fail.
 * - Subscription ids are allocated cyclically: an id is not reused until
 *   the 32-bit space wrapped, so a late message for an old id never names a
 *   newer subscription.
 * - An event lost because memory was short is never silent: the
 *   subscription becomes DESYNC and a REVOKED(DESYNC) is sent from a
 *   message preallocated per subscription (once per DESYNC period;
 *   SET_FLAGS RESYNCED re-arms it and answers -ENOMEM, DESYNC kept but
 *   BLOCKING applied, if it cannot).  When the receive queue is full
 *   instead, the socket reports ENOBUFS; GET_SUBS shows what is DESYNC.
 * - If the SUBSCRIBE answer cannot be queued (receive queue full), the
 *   subscription is removed again before the error is returned.
 */
#ifndef _UAPI_LINUX_MMN_H
#define _UAPI_LINUX_MMN_H

#include <linux/types.h>

#define MMN_GENL_NAME		"mmn"
#define MMN_GENL_VERSION	1

/*
 * Largest ack timeout in ms, for MMN_A_TIMEOUT_MS (BIND, SUBSCRIBE) and the
 * module parameters max_ack_timeout_ms and default_ack_timeout_ms.  A thread
 * waiting for an ACK cannot be interrupted, so every wait must stay far
 * below the kernel's hung-task limit (120 s).
 */
#define MMN_ACK_TIMEOUT_MAX_MS	10000

enum mmn_cmd {
	MMN_CMD_UNSPEC,
	/* daemon -> kernel */
	MMN_CMD_BIND,		/* in: [TIMEOUT_MS default]; out: reply with nothing */
	MMN_CMD_UNBIND,		/* in: -; removes every subscription */
	MMN_CMD_SUBSCRIBE,	/* in: PID, START, LENGTH, [SUB_FLAGS], [TIMEOUT_MS]; out: SUB_ID */
	MMN_CMD_UNSUBSCRIBE,	/* in: SUB_ID; returns at once, removal is deferred */
	MMN_CMD_SET_FLAGS,	/* in: SUB_ID, SUB_FLAGS (replaces the settable flags) */
	MMN_CMD_ACK,		/* in: SEQ; -ENOENT if nobody waits for it (late/duplicate) */
	MMN_CMD_GET_SUBS,	/* dump: one message per subscription (SUB_* attributes) */
	MMN_CMD_GET_STATS,	/* out: STATS nest */
	/* kernel -> daemon, unicast to the bound port */
	MMN_CMD_INVALIDATE,	/* SEQ, EVENT, EVENT_FLAGS, RANGE_START, RANGE_END, PID, SUBS */
	MMN_CMD_INVALIDATE_END,	/* SEQ, SUBS (SUB_ID only) */
	MMN_CMD_RELEASE,	/* SUB_ID: the target mm exited */
	MMN_CMD_REVOKED,	/* SUB_ID, REASON */

	__MMN_CMD_MAX,
};
#define MMN_CMD_MAX (__MMN_CMD_MAX - 1)

enum mmn_attr {
	MMN_A_UNSPEC,
	MMN_A_PAD,
	MMN_A_PID,		/* u32: target tgid, in the daemon's pid namespace */
	MMN_A_START,		/* u64: page aligned */
	MMN_A_LENGTH,		/* u64: page aligned, non-zero */
	MMN_A_END,		/* u64: exclusive */
	MMN_A_SUB_ID,		/* u32 */
	MMN_A_SUB_FLAGS,	/* u32: MMN_SUB_F_* */
	MMN_A_SUB_STATE,	/* u32: MMN_SUB_ST_* (GET_SUBS) */
	MMN_A_TIMEOUT_MS,	/* u32: ack timeout, 1..max_ack_timeout_ms */
	MMN_A_SEQ,		/* u64: event id, unique per bind */
	MMN_A_EVENT,		/* u32: enum mmn_event */
	MMN_A_EVENT_FLAGS,	/* u32: MMN_EV_F_* */
	MMN_A_RANGE_START,	/* u64: the kernel's whole range, unclipped */
	MMN_A_RANGE_END,	/* u64: exclusive */
	MMN_A_SUBS,		/* nest of MMN_A_SUB */
	MMN_A_SUB,		/* nest: SUB_ID, START (clipped), END (clipped, exclusive) */
	MMN_A_REASON,		/* u32: enum mmn_revoke_reason */
	MMN_A_STATS,		/* nest of MMN_STATS_A_* (u64 each) */

	__MMN_A_MAX,
};
#define MMN_A_MAX (__MMN_A_MAX - 1)

/* Subscription flags.  BLOCKING is the only one SET_FLAGS may change. */
enum mmn_sub_flags {
	/* a blocking consumer holds device mappings: wait for ACK, refuse non-blockable */
	MMN_SUB_F_BLOCKING	= 1U << 0,
	/* SET_FLAGS only: clear MMN_SUB_ST_DESYNC (the daemon resynchronised) */
	MMN_SUB_F_RESYNCED	= 1U << 1,

	__MMN_SUB_F_ALL		= MMN_SUB_F_BLOCKING | MMN_SUB_F_RESYNCED,
};

/* Subscription state, reported by GET_SUBS. */
enum mmn_sub_state {
	MMN_SUB_ST_LIVE		= 0,
	MMN_SUB_ST_RELEASED	= 1,	/* target mm exited */
	MMN_SUB_ST_DYING	= 2,	/* unsubscribed, removal queued */
	MMN_SUB_ST_DESYNC	= 1U << 8,	/* or-ed in: events were lost */
};

/* Event flags on INVALIDATE. */
enum mmn_event_flags {
	MMN_EV_F_BLOCKABLE	= 1U << 0,	/* the kernel may sleep for this one */
	MMN_EV_F_NEEDS_ACK	= 1U << 1,	/* a thread waits for MMN_CMD_ACK(SEQ) */
	MMN_EV_F_REFUSED	= 1U << 2,	/* not blockable and refused (-EAGAIN) */

	__MMN_EV_F_ALL		= MMN_EV_F_BLOCKABLE | MMN_EV_F_NEEDS_ACK | MMN_EV_F_REFUSED,
};

/*
 * MMN_A_EVENT: what the kernel's invalidation was for.  The module maps each
 * kernel event (enum mmu_notifier_event) to one of these; the values are
 * fixed, whatever the kernel numbers its own.
 */
enum mmn_event {
	MMN_EVENT_UNMAP			= 0,
	MMN_EVENT_CLEAR			= 1,
	MMN_EVENT_PROTECTION_VMA	= 2,
	MMN_EVENT_PROTECTION_PAGE	= 3,
	MMN_EVENT_SOFT_DIRTY		= 4,
	MMN_EVENT_RELEASE		= 5,
	MMN_EVENT_MIGRATE		= 6,
	MMN_EVENT_EXCLUSIVE		= 7,
};

enum mmn_revoke_reason {
	MMN_REVOKE_DESYNC	= 1,	/* events for this subscription were lost */
	MMN_REVOKE_TIMEOUT	= 2,	/* the daemon missed an ack deadline */
};

/* Counters in the MMN_A_STATS nest of GET_STATS, each a u64. */
enum mmn_stats_attr {
	MMN_STATS_A_UNSPEC,
	MMN_STATS_A_PAD,
	MMN_STATS_A_SUBS,		/* live subscriptions now */
	MMN_STATS_A_EVENTS,		/* INVALIDATE messages sent */
	MMN_STATS_A_WAITS,		/* blockable invalidations that waited */
	MMN_STATS_A_ACKS,		/* waits ended by ACK */
	MMN_STATS_A_TIMEOUTS,		/* waits ended by timeout */
	MMN_STATS_A_SEND_FAILS,		/* events that could not be sent */
	MMN_STATS_A_NONBLOCK_REFUSED,	/* non-blockable invalidations refused */
	MMN_STATS_A_SELF_SKIPS,		/* blockable, but the daemon's own thread: no wait */
	MMN_STATS_A_STALE_ACKS,		/* ACKs nobody waited for */
	MMN_STATS_A_BAD_REQUESTS,	/* commands rejected for bad input */
	/* added with the module (additive, v1): */
	MMN_STATS_A_ENDS,		/* INVALIDATE_END messages sent */
	MMN_STATS_A_RELEASES,		/* RELEASE events (target mm exits) seen */

	__MMN_STATS_A_MAX,
};
#define MMN_STATS_A_MAX (__MMN_STATS_A_MAX - 1)

#endif /* _UAPI_LINUX_MMN_H */
