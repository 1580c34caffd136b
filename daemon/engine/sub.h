/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Subscriptions (a client's sub) and source subscriptions (ksub, the
 * page-aligned union of subs on a target the source is asked to watch).
 * Loop thread only.
 *
 * ksub    one source subscription; owned by its target; lives while it
 *         has subs (or until the source releases it).
 * sub     a client's subscription: in client->subs, in ksub->subs and in
 *         the target's index while SUB_LIVE/SUB_DYING.
 */
#ifndef MMN_DAEMON_SUB_H
#define MMN_DAEMON_SUB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

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
};

struct pending_sub {
	struct deferred d;
	struct client *c; /* NULL once the client is gone */
	uint64_t request_id;
	struct sub_req req;
	struct list clink; /* client->pending */
};

struct sub {
	struct list clink;	/* client->subs */
	struct list klink;	/* ksub->subs while attached */
	struct itree_node node; /* target->subs, [start, end - 1] while indexed */
	struct deferred d;	/* DEF_REMOVE while queued */
	uint64_t id;
	struct client *c; /* NULL once orphaned */
	struct target *t;
	struct ksub *k;
	uint64_t start, end;
	uint32_t flags; /* MMN__V1__SUB_FLAG__SUB_BLOCKING or _NONBLOCKING */
	uint64_t mask;
	uint32_t timeout_ms;
	uint32_t slot, gen;
	uint32_t inflight; /* in-flight events it was notified of (slot odd while > 0) */
	enum sub_state state;
	bool indexed;
	uint64_t unsub_request_id; /* SUB_DYING: the Unsubscribe to answer */
	bool unsub_reply;
	bool resync; /* non-blocking, events coalesced away: owes a whole-range pair */
};

struct ksub {
	struct ksub *hnext;	/* broker->khash chain */
	struct itree_node node; /* target->ksubs, [start, end - 1] */
	uint32_t id;
	struct target *t;
	uint64_t start, end; /* page aligned, end exclusive */
	struct list subs;
	uint32_t nsubs, nblocking;
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
	 * again, whoever subscribes: RELEASE follows.  A ksub coalesced from
	 * it stays reaped unless blocking subs of a live ksub join it (they
	 * still hold mappings; the next retry asks them too).
	 */
	bool reaped;
};

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
void mmn__pending_sub_cancel(struct pending_sub *p);
struct ksub *mmn__ksub_find(struct broker *b, uint32_t id);
/* The source released/revoked @k: tell its subs, free them and the ksub. */
void mmn__ksub_release(struct ksub *k, bool released, uint32_t reason);
/* The source lost events of @k: resynchronise its subs. */
void mmn__ksub_resync(struct ksub *k);
/* A refused (OOM) invalidation of @k is done with: clear BLOCKING for good (see struct ksub). */
void mmn__ksub_reaped(struct ksub *k);
/* Send live sub @s an Invalidate{RESYNC} of its whole range and its InvalidateEnd (a pair). */
void mmn__sub_resync(struct sub *s);
struct sub *mmn__client_find_sub(struct client *c, uint64_t sub_id);

#endif
