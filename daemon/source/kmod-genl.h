/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source's pieces that tests and mmnctl-style tools may reach:
 * the parser of the module's kernel -> daemon messages and the source's
 * counters.  The family itself is defined only in <linux/mmn.h>.
 */
#ifndef MMN_DAEMON_GENL_KMOD_H
#define MMN_DAEMON_GENL_KMOD_H

#include <stddef.h>
#include <stdint.h>

#include <linux/mmn.h>
#include <linux/netlink.h>

#include <netlink/attr.h>

#include "source/source.h"

/*
 * Parse one generic-netlink message of the mmn family (INVALIDATE,
 * INVALIDATE_END, RELEASE, REVOKED) into @ev.  The touched subscriptions go
 * into @subs (room for @cap); RELEASE and REVOKED carry their one
 * subscription in subs[0].  Nothing is allocated.
 *
 * Returns 0; -EBADMSG when the message is malformed (a mandatory attribute
 * is missing or has the wrong size); -ENOSPC when it lists more than @cap
 * subscriptions, with the count needed in *@needed; -EOPNOTSUPP for a
 * command that is not a kernel -> daemon event.
 */
/* The attribute policy of the module's messages (kmod-genl.c). */
extern const struct nla_policy mmn__kmod_ev_policy[MMN_A_MAX + 1];

int mmn__kmod_parse_event(const struct nlmsghdr *nlh, struct source_event *ev, struct source_event_sub *subs,
			  size_t cap, size_t *needed);

/* What the kmod source counted since it was created. */
struct kmod_stats {
	uint64_t events;        /* INVALIDATE messages received */
	uint64_t acks_sent;     /* ACK commands sent to the module */
	uint64_t self_acks;     /* needs_ack events no live ksub wanted: acked by the source itself */
	uint64_t stale_acks;    /* ACKs the module answered with -ENOENT */
	uint64_t overruns;      /* receive-queue overruns (ENOBUFS): events were lost */
	uint64_t desync_revokes; /* ksubs revoked because of an overrun or a kernel REVOKED */
	uint64_t bad_messages;  /* malformed messages from the kernel, dropped */
	uint64_t request_errors; /* asynchronous requests the module refused */
	uint64_t sync_timeouts; /* synchronous requests (SUBSCRIBE) given up on */
};

/* @s must be a kmod source; returns 0 or -EINVAL. */
int mmn__source_kmod_stats(struct source *s, struct kmod_stats *out);

#endif
