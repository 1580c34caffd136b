/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * struct mmn_sub, the handle mmn_subscribe() returns, and what sub.c does
 * with it: the lists of c (live/dead subs and their hash, tombstones), the pins, and the
 * messages about one subscription.  All under c->lock.
 */
#ifndef MMN_CLIENT_SUB_H
#define MMN_CLIENT_SUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mmn/mmn.h"
#include "wire.h"

#define MMN_MAX_OUTSTANDING 32 /* invalidations of one sub delivered, not yet ended */
#define MMN_TOMBSTONES	    64 /* removed handles kept to detect a second unsubscribe */

struct mmn_client;
struct mmn_seqpage_slot;

/* What a handle stands for (mmnd's own subscriptions have their own states). */
enum handle_state {
	HANDLE_ACTIVE, /* known to mmnd (or being resubscribed) */
	HANDLE_DEAD,   /* released/revoked by mmnd; waits for mmn_unsubscribe() */
	HANDLE_GONE,   /* unsubscribed: a tombstone */
};

/*
 * An invalidation delivered to the callback whose end is not delivered yet:
 * its struct mmn_range, packed (40 bytes instead of 48 and a copy of
 * event_id: a sub holds MMN_MAX_OUTSTANDING of them, most of its memory).
 */
struct outstanding {
	uint64_t start, end, seq, event_id;
	uint8_t event;
	bool blockable, needs_ack;
};

static inline struct outstanding mmn__out_pack(const struct mmn_range *r)
{
	return (struct outstanding){.start = r->start, .end = r->end, .seq = r->seq, .event_id = r->event_id,
				    .event = (uint8_t)r->event, .blockable = r->blockable, .needs_ack = r->needs_ack};
}

static inline struct mmn_range mmn__out_range(const struct outstanding *o)
{
	return (struct mmn_range){.start = o->start, .end = o->end, .event = (enum mmn_event)o->event,
				  .blockable = o->blockable, .seq = o->seq, .event_id = o->event_id,
				  .needs_ack = o->needs_ack};
}

struct mmn_sub {
	/*
	 * First, at offset 0: what the inline readers of mmn.h read (seq.c
	 * keeps the invariants mmn.h states).  Then, read by
	 * mmn_read_begin_slow() on any thread without a lock (atomic builtins):
	 * epoch, a futex word, odd while the sub is detached from a sequence
	 * slot (reconnecting, RESYNC in flight, dead), even and equal to
	 * seq.cookie's low half while seq.word points to slot; wflag; dead.  All
	 * written under c->lock; slot/gen are the slot mmnd gave (sub.c),
	 * which seq.c publishes in seq.
	 */
	struct mmn_sub_seq seq;
	uint8_t *wflag; /* the slot's waiter flag (NULL: mmnd wakes every slot), set with seq.word */
	uint32_t epoch;
	uint32_t gen;
	int dead;
	const struct mmn_seqpage_slot *slot;

	struct mmn_client *c;

	/* Under c->lock. */
	enum handle_state state;
	pid_t pid;
	uint64_t start, end; /* [start, end) as subscribed */
	uint64_t sub_id;
	uint64_t resub_req; /* request id of the pending re-Subscribe, 0 = none */
	bool lost;	    /* connection lost: mmn_dispatch() ends what was delivered (c->lost_pending) */
	uint8_t resub_idx;  /* with resub_req: its item in the re-Subscribe batch (resub.c) */
	struct mmn_sub_opts opts;
	unsigned refs; /* queued events and the running callback pin the memory */
	struct outstanding out[MMN_MAX_OUTSTANDING];
	unsigned nout;
	struct mmn_sub *next, *prev; /* c->subs (live and dead), or c->tombs */
	struct mmn_sub *hnext;	     /* chain of c->htab while on c->subs (sub.c) */
};

/* An empty hash (c->hinit): at allocation and after mmn__free_subs(). */
void mmn__sub_hash_init(struct mmn_client *c);
/*
 * Grow the hash for @more new subs (only on a thread that may allocate: never
 * the dispatch path).  Failure is not reported: the chains grow instead.
 */
void mmn__sub_reserve(struct mmn_client *c, size_t more);
/*
 * A zeroed handle, or NULL (-ENOMEM); any thread.  mmn__sub_free() gives
 * it back (NULL is ignored).  Handles come from a pool the dispatch thread
 * can touch without faulting (memory.h).
 */
struct mmn_sub *mmn__sub_alloc(void);
void mmn__sub_free(struct mmn_sub *s);
/* The active sub mmnd knows as @sub_id on this connection, or NULL. */
struct mmn_sub *mmn__sub_by_id(struct mmn_client *c, uint64_t sub_id);
/* The sub whose re-Subscribe has request id @req, or NULL. */
struct mmn_sub *mmn__sub_by_resub_req(struct mmn_client *c, uint64_t req);
/* Set (or clear, @req 0) the request id of @s's pending re-Subscribe; @s is on c->subs. */
void mmn__sub_set_resub(struct mmn_client *c, struct mmn_sub *s, uint64_t req);
/* Take mmnd's slot for @s (on c->subs); @publish: readers may use it now (else at the RESYNC end). */
void mmn__sub_attach(struct mmn_sub *s, uint64_t sub_id, uint32_t slot, uint32_t gen, bool publish);
/* Link the new @s, answered by @sr: 0, or the error mmn_subscribe() reports. */
int mmn__sub_link(struct mmn_client *c, struct mmn_sub *s, const Mmn__V1__SubscribeReply *sr);
/* Take @s off c->subs (mmn_unsubscribe()). */
void mmn__sub_unlink(struct mmn_client *c, struct mmn_sub *s);
/* Keep the removed @s as a tombstone, dropping the pin mmn_unsubscribe() took. */
void mmn__sub_bury(struct mmn_client *c, struct mmn_sub *s);
/* Drop a pin: a tombstone without pins may be freed. */
void mmn__sub_put(struct mmn_sub *s);
/* mmn_disconnect(): free every sub and tombstone. */
void mmn__free_subs(struct mmn_client *c);

int mmn__sub_send_subscribe(struct mmn_client *c, const struct mmn_sub *s, uint64_t req_id, bool resubscribe);
void mmn__sub_send_unsubscribe(struct mmn_client *c, uint64_t sub_id);

/*
 * Batches (SubscribeMany, UnsubscribeMany).  A batch has at most
 * min(HelloReply.max_batch, MMN_BATCH_MAX) items and fits in one packet.
 * MMN_BATCH_MAX is what the reply to a SubscribeMany can hold in
 * MMN_WIRE_MAX_MSG: an item's SubscribeResult takes at most 33 bytes (its
 * field's tag and length, and the SubscribeReply's, a 10-byte sub_id and three
 * 5-byte uint32 with their tags) after an envelope of at most 15.
 */
#define MMN_BATCH_ITEM_REPLY_MAX 33
#define MMN_BATCH_MAX ((MMN_WIRE_MAX_MSG - 15) / MMN_BATCH_ITEM_REPLY_MAX)

/* Whether a request whose body (the SubscribeMany or UnsubscribeMany) has @body bytes fits in a packet. */
bool mmn__batch_fits(size_t body);
/* Bytes @s adds to the body of a SubscribeMany. */
size_t mmn__sub_item_bytes(const struct mmn_sub *s, bool resubscribe);
/* Bytes of the body of an UnsubscribeMany of @ids. */
size_t mmn__sub_ids_bytes(const uint64_t *ids, size_t n);
/* One SubscribeMany of @subs (at most MMN_BATCH_MAX) as request @req_id. */
int mmn__sub_send_subscribe_many(struct mmn_client *c, struct mmn_sub *const *subs, size_t n, uint64_t req_id,
				 bool resubscribe);
/* One UnsubscribeMany of @ids; its reply is ignored. */
void mmn__sub_send_unsubscribe_many(struct mmn_client *c, uint64_t *ids, size_t n);
/* True while an ack of @s reaches the daemon that asked it (connected, @s not being resubscribed). */
bool mmn__sub_acks_go(const struct mmn_client *c, const struct mmn_sub *s);
/*
 * Ack @event_id of @s; 0 without sending when that connection is gone.
 * @batch: the dispatch thread's ack, which may wait for the others of its
 * packet (mmn__conn_ack()).
 */
int mmn__sub_send_ack(struct mmn_client *c, struct mmn_sub *s, uint64_t event_id, bool batch);

#endif
