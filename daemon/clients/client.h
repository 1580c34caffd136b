/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Client connections: accept, receive, send, drop.  Loop thread only.
 *
 * client  owns its subscriptions (client->subs), its sequence page and
 *         its share tokens.  A dropped client is unlinked at once and its
 *         memory freed in the uv_close callback of its poll handle.
 * uid_acct  per-uid connection and subscription counts; in broker->uhash
 *         while a connection of that uid exists (created at accept,
 *         freed when its last client is destroyed).  Clients point at it.
 */
#ifndef MMN_DAEMON_CLIENT_H
#define MMN_DAEMON_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "engine/list.h"
#include "hist.h"
#include "wire.h"

struct broker;
struct sub;
struct mmn_seqpage;
struct mmn_event_record;
struct ackring;

/* One queued outgoing packet (only when the peer's socket is full). */
struct outmsg {
	struct list link;
	uint64_t sub_id; /* Invalidate/InvalidateEnd of a non-blocking sub, else 0 */
	uint32_t kind;	 /* envelope body case */
	uint32_t len;
	uint8_t data[];
};

/* Per-uid accounting (see the lifetime rules at the top). */
struct uid_acct {
	struct uid_acct *next; /* broker->uhash chain */
	uid_t uid;
	uint32_t nclients; /* connections, with or without Hello */
	uint32_t nsubs;	   /* live subscriptions plus deferred Subscribes of its clients */
};

struct client {
	struct list link;      /* broker->clients, or broker->reap once dropped */
	struct list hlink;     /* broker->unhello until Hello (FIFO by accept time), else empty */
	uint64_t accepted_at;  /* loop time */
	struct uid_acct *acct; /* never NULL once accepted */
	bool limited;	       /* the per-uid limits apply (not root or mmnd's uid) */
	struct broker *b;
	uv_poll_t poll;
	int fd;
	int poll_events;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int pidfd;
	char name[65];
	bool hello;
	bool dropping; /* queued for drop */
	bool closed;   /* handle closing */
	bool uffd_attached;
	int drop_error;
	/* sequence page */
	struct mmn_seqpage *page;
	size_t page_size;
	int memfd;
	/* waiter page (Hello.waiter_flag), or NULL: then every slot end wakes */
	uint8_t *waiters;
	size_t waiters_size;
	int wait_memfd; /* with waiters: until HelloReply has carried it, then -1 */
	uint32_t nslots, nfree, gen;
	uint32_t nused;	      /* slots [0, nused) were handed out at least once */
	uint32_t free_cap;    /* room in free_slots, at least nused */
	uint32_t *free_slots; /* freed slots, reused last in first out */
	/* subscriptions */
	struct list subs;
	struct list pending; /* struct pending_sub */
	uint32_t npending;   /* entries of @pending, plus items of parked batches */
	struct list shares;
	uint32_t nsubs;
	uint32_t pending_acks;
	/*
	 * Subscriptions revoked for a missed ack deadline (engine/fanout.c
	 * evict), plus one for an administrator's EvictClient, which drops
	 * the client at once: a listed client's count is its deadline misses.
	 */
	uint64_t evictions;
	/*
	 * Blocking-ack latency: from the event's start (struct event
	 * begin_ns, when its Invalidates go out) to this client's ack for
	 * one recipient, counted by engine/fanout.c as each ack settles a
	 * pending recipient (Ack and AckMany alike).  Loop thread only.
	 */
	struct mmn_hist ack_latency;
	/*
	 * Fan-out scratch (engine/fanout.c, loop thread): the last recipient
	 * sent to this client by fan-out number @chain_gen (broker's
	 * fanout_gen), to link the next one (struct recip, next_of_client).
	 * Meaningless for any other fan-out.
	 */
	uint64_t chain_gen;
	uint32_t chain_last;
	/* outgoing queue */
	struct list outq;
	uint32_t nqueued;
	bool coalescing; /* queue overflowed: non-blocking events are coalesced until it drains */
	/*
	 * Protocol v2 (version >= 2): Invalidates and InvalidateEnds are packed
	 * into @batch (MMN_EVENT_BATCH_MAX records, allocated at the first
	 * event, freed with the client) and sent as one EventBatch when it is
	 * full, before any other message to @c, or before the loop polls.
	 * While @nbatch > 0, @blink is on broker->batched; else it is empty.
	 * @nfoldable counts the records of @batch an InvalidateEnd may fold
	 * into (Invalidates asking no ack): with none, an end skips the search.
	 */
	uint32_t version; /* negotiated in Hello; 0 before */
	bool ack_runs;	  /* Hello.ack_runs (v2): AckMany may carry runs */
	struct mmn_event_record *batch;
	uint32_t nbatch, nfoldable;
	struct list blink;
	/* broker->batch_gen when @c was last sent a batch: a short first one per loop iteration (send.c). */
	uint64_t batch_gen;
	/* Hello.ack_ring (v2): the acks @c writes to shared memory (ackring.h), or NULL. */
	struct ackring *ackring;
};

struct listener {
	struct list link;
	struct broker *b;
	uv_poll_t poll;
	int fd;
	char *path; /* unlinked at free when we created it (and it is still that socket) */
	dev_t dev;  /* @path's file as bound */
	ino_t ino;
};

/* The journal fields naming @c (log.h). */
#define CLIENT_FIELDS(c)                                                                                     \
	((struct log_fields){.has = LOG_F_CLIENT, .client_pid = (c)->pid, .client_uid = (c)->uid})

/* Take connection @fd (refused with Error when a limit is reached, see broker.h). */
int mmn__client_accept(struct broker *b, int fd);
/* @c completed Hello: its deadline is off. */
static inline void mmn__client_hello_done(struct client *c)
{
	list_del(&c->hlink);
}
/* Arm broker->hello_timer for the oldest connection owing Hello (after hello_timeout_ms changed). */
void mmn__client_hello_rearm(struct broker *b);

/* A subscription of @c was created (+1) or went (-1), live or deferred: per-uid count. */
static inline void mmn__client_uid_subs(struct client *c, int delta)
{
	if (c->acct)
		c->acct->nsubs += (uint32_t)delta;
}

/* Read what the client has queued now (before evicting it at a deadline). */
void mmn__client_read_now(struct client *c);
void mmn__client_reap(struct broker *b);
void mmn__client_free_all(struct broker *b);

#endif
