/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Subscriptions (a client's sub) and source subscriptions (ksub, the
 * page-aligned union of subs on a target the source is asked to watch).
 * Loop thread only.
 *
 * ksub    one source subscription: a granule-aligned extent of its target
 *         (source caps.ksub_granule).  Owned by its target; lives while a
 *         sub overlaps it (nsubs > 0), or until the source releases it.
 *         Never moved, resized or re-created while it lives.
 * sub     a client's subscription: in client->subs, in broker->sub_ids and
 *         in the target's index while SUB_LIVE/SUB_DYING.  Every ksub its
 *         range overlaps counts it (nsubs, nblocking) while it is indexed.
 */
#ifndef MMN_DAEMON_SUB_H
#define MMN_DAEMON_SUB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/idmap.h"
#include "engine/itree.h"
#include "engine/list.h"
#include "engine/target.h"
#include "mmn.pb-c.h"

struct broker;
struct client;

enum sub_state {
	SUB_LIVE,  /* indexed, receives invalidations */
	SUB_DYING, /* unsubscribed while its target is invalidating; removal deferred */
	SUB_DEAD,  /* revoked/released/orphaned; removal from the index deferred */
};

struct sub_req {
	pid_t pid;
	uint64_t start, end; /* end exclusive */
	uint32_t flags;
	uint64_t mask;
	uint32_t timeout_ms; /* effective */
	bool resubscribe;    /* uffd source: register leniently (Subscribe.resubscribe) */
	bool no_end;	     /* Subscribe.no_end: no InvalidateEnd messages */
};

/* One result of a SubscribeMany item (sub_id 0 when @error). */
struct sub_result {
	int error;
	uint64_t sub_id;
	uint32_t slot, gen, timeout_ms;
};

/* One item of a SubscribeMany: validated (res.error 0, @t referenced) or refused. */
struct sub_batch_item {
	struct sub_req r;
	struct target *t; /* a reference while res.error is 0 and it is not created yet */
	struct sub_result res;
};

/*
 * A Subscribe, or a SubscribeMany (@items), waiting for a target to finish
 * invalidating.  A batch waits until every one of its targets is quiescent,
 * then is created at once and answered with one reply, so that reply
 * precedes any Invalidate of its subs.  Counted in client->npending (and
 * the uid's subscriptions) by its @naccepted requests while queued.
 */
struct pending_sub {
	struct deferred d;
	struct client *c; /* NULL once the client is gone */
	uint64_t request_id;
	struct sub_req req; /* a single Subscribe (@items NULL) */
	struct list clink;  /* client->pending */
	struct sub_batch_item *items; /* owned */
	uint32_t n, naccepted;
};

struct sub {
	struct list clink;	/* client->subs */
	struct idmap_node idn;	/* broker->sub_ids by id while in client->subs */
	struct itree_node node; /* target->subs, [start, end - 1] while indexed */
	struct deferred d;	/* DEF_REMOVE while queued */
	uint64_t id;
	struct client *c; /* NULL once orphaned */
	struct target *t;
	uint64_t start, end;
	uint32_t flags; /* MMN__V1__SUB_FLAG__SUB_BLOCKING or _NONBLOCKING */
	uint64_t mask;
	bool no_end; /* Subscribe.no_end: its events end in the slot only, never in a message */
	uint32_t timeout_ms;
	uint32_t slot, gen;
	uint32_t inflight; /* in-flight events it was notified of (slot odd while > 0) */
	enum sub_state state;
	bool indexed;
	struct unsub_wait *unsub; /* SUB_DYING: the Unsubscribe(Many) that waits for it */
	bool resync; /* non-blocking, events coalesced away: owes a whole-range pair */
};

struct ksub {
	struct idmap_node idn;	/* broker->ksub_ids */
	struct itree_node node; /* target->ksubs, [start, end - 1] */
	uint32_t id;
	struct target *t;
	uint64_t start, end; /* granule aligned, end exclusive */
	uint32_t nsubs, nblocking; /* indexed subs overlapping it, and the blocking ones */
	/* mmn__ksub_release() is freeing its subs: it goes at the end, not with its last sub. */
	bool releasing;
	/*
	 * BLOCKING as last told to the source: set while a blocking sub is on
	 * it (nblocking > 0), unless reaped.
	 */
	bool blocking;
	/*
	 * A non-blockable invalidation the source refused listed this ksub
	 * (only the OOM reaper issues those: the target is being OOM-killed)
	 * and every blocking recipient has acked or been evicted, so BLOCKING
	 * was cleared for the kernel's retry to succeed.  It is never set
	 * again, whoever subscribes: RELEASE follows.
	 */
	bool reaped;
};

/*
 * An Unsubscribe or UnsubscribeMany whose reply waits for subs unsubscribed
 * while their target was invalidating (SUB_DYING): each holds it
 * (sub->unsub) until it leaves; the last one sends the reply (Status, or
 * UnsubscribeManyReply with @errors) and frees it.  A sub killed instead
 * (its client dropped, its ksub released) lets go without a reply to a
 * single Unsubscribe: that client is gone or told Release/Revoked.
 */
struct unsub_wait {
	struct client *c;
	uint64_t request_id;
	uint32_t remaining; /* subs still holding it */
	bool many;
	uint32_t n;
	int32_t errors[]; /* many: per item, 0 or a negative errno */
};

/*
 * Create @c's subscription @r on quiescent @t now, consuming the caller's
 * reference on @t; no reply is sent.  0 and *@res, or a negative errno.
 */
int mmn__sub_create(struct target *t, struct client *c, const struct sub_req *r, struct sub_result *res);
/*
 * Unsubscribe @c's @sub_id now (0), or once its target quiesces (1: @w
 * counts it; @w NULL: a single Unsubscribe, answered then), or -ENOENT.
 */
int mmn__sub_remove(struct client *c, uint64_t request_id, uint64_t sub_id, struct unsub_wait *w);

/*
 * Subscribe @c to @r on @t (validated and authorised; takes over the
 * caller's reference on @t): now or at quiescence.  Replies to @request_id.
 */
void mmn__sub_add(struct target *t, struct client *c, uint64_t request_id, const struct sub_req *r);
int mmn__sub_unsubscribe(struct client *c, uint64_t request_id, uint64_t sub_id);
/* Kill @s: close its pairings, release its slot; unindex now or at quiescence. */
void mmn__sub_kill(struct sub *s);
void mmn__sub_apply_deferred(struct target *t, struct deferred *d);
/* Queue @d on @t until its last in-flight invalidation ends. */
void mmn__sub_defer(struct target *t, struct deferred *d);
/* An event on @t ended; apply deferred changes if it was the last. */
void mmn__sub_quiesce(struct target *t);
/*
 * SubscribeMany: create the @n @items (ownership passes; refused items keep
 * their error) now or once all their targets are quiescent, and answer
 * @request_id with one SubscribeManyReply.
 */
void mmn__sub_add_many(struct client *c, uint64_t request_id, struct sub_batch_item *items, uint32_t n);
void mmn__pending_sub_cancel(struct pending_sub *p);
struct ksub *mmn__ksub_find(struct broker *b, uint32_t id);
/* The source released/revoked @k: tell its subs, free them and the ksub. */
void mmn__ksub_release(struct ksub *k, bool released, uint32_t reason);
/* The source lost events of @k: resynchronise its subs and tell the source. */
void mmn__ksub_resync(struct ksub *k);
/* Resynchronise every live sub overlapping @k (mmn__sub_resync each). */
void mmn__ksub_resync_subs(struct ksub *k);
/* The id of a ksub under @s (the one at its start), for listings. */
uint32_t mmn__sub_ksub_id(const struct sub *s);
/* A refused (OOM) invalidation of @k is done with: clear BLOCKING for good (see struct ksub). */
void mmn__ksub_reaped(struct ksub *k);
/* Send live sub @s an Invalidate{RESYNC} of its whole range and its InvalidateEnd (a pair). */
void mmn__sub_resync(struct sub *s);
struct sub *mmn__client_find_sub(struct client *c, uint64_t sub_id);

#endif
