/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source's state, shared by its files: kmod.c (the source_ops and
 * the source's life), kmod-receive.c (the receive path), kmod-event.c
 * (messages into source events), kmod-ksub.c (the ksub table) and
 * kmod-channel.c (the socket and the requests).
 *
 * Lifetime: a kmod_source is allocated by mmn__source_kmod_new() and freed
 * in the close callback of the last of its two handles (poll and idle) after
 * source_ops.destroy; the socket is closed by destroy itself.  Everything
 * runs on the loop thread (source.h); nothing is locked.
 */
#ifndef MMN_DAEMON_SOURCE_KMOD_SOURCE_H
#define MMN_DAEMON_SOURCE_KMOD_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/socket.h>

#include "log.h"
#include "source/kmod-genl.h"
#include "source/source.h"

#define KMOD_RCVBUF (16 << 20)          /* receive queue: ~100k INVALIDATEs */
#define KMOD_RXBUF (64 << 10)           /* one datagram */
#define KMOD_SYNC_TIMEOUT_MS 2000       /* bound on a synchronous request */
#define KMOD_SYNC_HOLDING_MS 50         /* ... once the kernel waits for our ACK */
#define KMOD_RECV_BUDGET 64             /* datagrams per poll callback */
#define KMOD_MAX_AWAITING 1024          /* events the kernel waits on at once */
#define KMOD_MAX_ORPHANS 16             /* SUBSCRIBEs given up on, answer pending */
#define KMOD_EVENT_MASK 0xffu           /* enum mmn_event 0..7 */

/* A kernel subscription the broker holds (open addressing, linear probing). */
struct ksub_slot {
	uint32_t id;
	uint64_t born; /* rx number of the SUBSCRIBE answer that created it */
	bool used;
	bool blocking;
	bool dead; /* released or revoked: events are no longer passed on */
};

/* A datagram received while waiting for a synchronous answer. */
struct backlog {
	struct backlog *next;
	uint64_t rx;
	size_t len;
	unsigned char data[];
};

struct kmod_source {
	struct source base;     /* first: the broker sees a struct source * */
	struct nl_sock *sk;
	int fd;
	int family;
	uint32_t portid;
	uv_poll_t poll;
	uv_idle_t idle;         /* drains the backlog; runs only while it is non-empty */
	uv_idle_cb drain_cb;    /* @idle's callback, set by kmod.c (kmod-receive.c's) */
	int open_handles;       /* the struct is freed when both handles closed */
	bool lost;
	bool started;           /* handles initialised and polling */
	bool overrun_pending;   /* ENOBUFS seen during a synchronous wait */
	int fatal;              /* socket error seen during a synchronous wait */

	unsigned char *rxbuf, *syncbuf;
	/*
	 * Every datagram read from the socket gets the next rx number.  The
	 * module reuses freed subscription ids: a message read before the
	 * SUBSCRIBE answer that created ksub X (rx < X.born) is about an
	 * earlier subscription with the same id and must not reach X.
	 */
	uint64_t rx;
	struct backlog *bl_head, **bl_tail;

	struct nl_msg *ack_msg; /* prebuilt ACK; MMN_A_SEQ patched in place */
	struct nlattr *ack_seq;

	struct ksub_slot *ksubs; /* capacity ksub_cap, a power of two */
	size_t ksub_cap, nksubs;

	/* event ids the kernel waits on, reported to the broker, not yet acked */
	uint64_t awaiting[KMOD_MAX_AWAITING];
	size_t nawaiting;
	bool awaiting_overflow;

	uint32_t orphans[KMOD_MAX_ORPHANS]; /* nlmsg_seq of abandoned SUBSCRIBEs */
	size_t norphans;

	struct source_event_sub *subs; /* parse target, grown only for bigger events */
	size_t subs_cap;

	struct kmod_stats stats;
	struct ratelimit rl;
	char extack[128];       /* the module's last error message */
};

static inline struct kmod_source *to_ks(struct source *s)
{
	return (struct kmod_source *)s;
}

#endif
