/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd's internal objects, shared by the broker's concept files and white-box
 * unit tests.  Not for main.c, bench/ or dbus.c (they use broker.h and admin.h).
 *
 * Ownership and lifetime, all on the one loop thread (no locks anywhere):
 *   broker  owns listeners, clients, targets, ksubs, in-flight events.
 *   client  owns its subscriptions (client->subs), its sequence page and
 *           its share tokens.  A dropped client is unlinked at once and its
 *           memory freed in the uv_close callback of its poll handle.
 *   uid_acct  per-uid connection and subscription counts; in broker->uhash
 *           while a connection of that uid exists (created at accept,
 *           freed when its last client is destroyed).  Clients point at it.
 *   target  one watched process (pid + pidfd).  Refcounted by its subs,
 *           ksubs, deferred requests and in-flight events; freed at 0.
 *   ksub    one source subscription; owned by its target; lives while it
 *           has subs (or until the source releases it).
 *   sub     a client's subscription: in client->subs, in ksub->subs and in
 *           the target's index while SUB_LIVE/SUB_DYING.
 *   event   one source invalidation in flight, from SOURCE_INVALIDATE to
 *           SOURCE_INVALIDATE_END; recycled through a pool so the fan-out
 *           and ack paths do not allocate once warm.
 *
 * Reentrancy: source acks and client drops are queued and performed by
 * broker_settle() at the end of every loop callback, so no callback ever
 * frees an object another frame is iterating.
 */
#ifndef MMN_DAEMON_BROKER_INTERNAL_H
#define MMN_DAEMON_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "admin.h"
#include "broker.h"
#include "index.h"
#include "log.h"
#include "seqpage.h"
#include "source.h"
#include "wire.h"

/* Intrusive circular doubly-linked list. */
struct list {
	struct list *next, *prev;
};

static inline void list_init(struct list *l)
{
	l->next = l->prev = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

static inline bool list_linked(const struct list *l)
{
	return l->next && l->next != l;
}

static inline void list_add_tail(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define container_of(p, T, m)	 ((T *)(void *)((char *)(p)-offsetof(T, m)))
#define list_entry(p, T, m)	 container_of(p, T, m)
#define list_for_each(pos, head) for (struct list *pos = (head)->next; pos != (head); pos = pos->next)
#define list_for_each_safe(pos, head)                                                                        \
	for (struct list *pos = (head)->next, *pos##_n = pos->next; pos != (head);                           \
	     pos = pos##_n, pos##_n = pos->next)

/* The user address space of x86-64 / arm64 (4-level): TASK_SIZE. */
#define MMN_TASK_SIZE ((UINT64_C(1) << 47) - 4096)
#define MMN_PAGE_SIZE UINT64_C(4096)

/* Event mask of every EventType mmn knows. */
#define MMN_EVENT_MASK_ALL ((UINT64_C(1) << (MMN__V1__EVENT_TYPE__EVENT_RESYNC + 1)) - 1)

struct broker;
struct client;
struct target;
struct ksub;
struct sub;
struct event;

enum sub_state {
	SUB_LIVE,  /* indexed, receives invalidations */
	SUB_DYING, /* unsubscribed while its target is invalidating; removal deferred */
	SUB_DEAD,  /* revoked/released/orphaned; removal from the index deferred */
};

/* A deferred change to a target, applied when its last invalidation ends (seed 001). */
enum deferred_kind {
	DEF_SUBSCRIBE, /* struct pending_sub */
	DEF_REMOVE,    /* the sub embedding it */
};

struct deferred {
	struct list link; /* target->deferred, FIFO */
	enum deferred_kind kind;
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

struct target {
	struct list link; /* broker->targets */
	struct broker *b;
	pid_t pid;
	int pidfd;
	unsigned refs;
	struct itree subs;
	struct itree ksubs;
	unsigned inflight; /* events in flight on it */
	struct list deferred;
};

enum recip_state {
	RECIP_NOTIFIED, /* told, nothing owed */
	RECIP_PENDING,	/* owes an Ack before its deadline */
	RECIP_CLOSED,	/* sub gone: pairing closed by Revoked/Release, or client lost */
};

struct recip {
	struct sub *sub; /* NULL when closed */
	uint64_t sub_id;
	/*
	 * The sub's client while the recipient is open.  Cleared together
	 * with @sub whenever the recipient closes (mmn__fanout_close_sub,
	 * before the client can be freed): a closed recipient never points at
	 * a client, so a later client at the same address cannot match it.
	 */
	struct client *c;
	uint64_t deadline;   /* loop time, ms */
	uint64_t start, end; /* the event's range clipped to the sub */
	uint8_t state;
	bool suppressed; /* coalesced away: the client never saw this Invalidate */
};

struct event {
	struct list link;  /* broker->events or broker->event_pool */
	struct list alink; /* broker->ack_queue while queued */
	struct broker *b;
	uint64_t id;
	struct target *t;
	uint32_t type;
	bool blockable, needs_ack, refused;
	bool acked;			 /* the source was acked (or need not be) */
	/*
	 * Refused events only: the source's END came while blocking recipients
	 * still owed acks.  The kernel did not go ahead, so they still hold
	 * mappings: the recipients that owed nothing were ended then, the
	 * event stays in flight for the others (no InvalidateEnd, slots odd)
	 * until they acked or were evicted and BLOCKING was cleared.
	 */
	bool end_seen;
	uint64_t begin_ns;		 /* uv_hrtime() at START */
	uint64_t range_start, range_end; /* the source's unclipped range, if it said */
	uint32_t npending;
	uint32_t nrecips, cap;
	struct recip *recips; /* pre-sized to broker->recip_reserve (mmn__fanout_reserve) */
	/*
	 * sub_id -> recipient index + 1 (0: empty), open addressing, hcap a
	 * power of two at least twice cap; sized with recips.  Valid while
	 * @hashed; the ack path scans @recips otherwise.
	 */
	uint32_t *rhash;
	uint32_t hcap;
	bool hashed;
	uint32_t nksubs, kcap;
	uint32_t *ksubs; /* refused events: the listed ksub ids, to clear BLOCKING */
	uv_timer_t timer; /* earliest pending deadline; initialised once, pooled */
	bool timer_inited;
};

struct share {
	struct list link; /* client->shares */
	uint8_t token[16];
	uint64_t start, end;
	uid_t peer_uid;
};

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
	uint32_t nslots, nfree, gen;
	uint32_t *free_slots;
	/* subscriptions */
	struct list subs;
	struct list pending; /* struct pending_sub */
	struct list shares;
	uint32_t nsubs;
	uint32_t pending_acks;
	uint64_t evictions;
	/* outgoing queue */
	struct list outq;
	uint32_t nqueued;
	bool coalescing; /* queue overflowed: non-blocking events are coalesced until it drains */
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

#define KHASH_SIZE 1024
#define UHASH_SIZE 256

struct broker {
	uv_loop_t *loop;
	struct source *src;
	struct broker_options opt;
	struct list listeners;
	struct list clients;
	struct list reap; /* clients to drop at settle */
	struct list targets;
	struct list events;
	struct list event_pool;
	struct list ack_queue;
	struct ksub *khash[KHASH_SIZE];
	struct uid_acct *uhash[UHASH_SIZE];
	/*
	 * Connections still owing Hello, oldest first: every deadline is
	 * accepted_at + opt.hello_timeout_ms, so the head expires first and
	 * one timer (armed for the head while the list is not empty) serves all.
	 */
	struct list unhello;
	uv_timer_t hello_timer;
	uint32_t nclients, ntargets;
	uint64_t next_client_id, next_sub_id;
	uint64_t nksubs;
	/*
	 * Every event's recipient array (pooled or in flight) holds at least
	 * this many: one per subscription that exists, the most one event can
	 * reach.  Grown before a sub is linked, so fan-out never allocates.
	 */
	uint32_t recip_reserve;
	struct admin_stats stats;
	struct admin_observer obs;
	bool has_obs;
	bool draining, freed, source_lost;
	unsigned handles; /* open uv handles; the broker is freed when 0 after free */
	struct ratelimit rl_client;
	uint64_t last_trim; /* loop time of the last malloc_trim() */
	/* protobuf-c arena for decoding one message: no malloc on the receive path */
	size_t arena_used;
	uint8_t arena[32768] __attribute__((aligned(16)));
};

/* broker.c */
void mmn__broker_settle(struct broker *b);
void mmn__broker_handle_closed(struct broker *b);
uint64_t mmn__broker_now(struct broker *b);

/* client.c / rpc.c */
/* Take connection @fd (refused with Error when a limit is reached, see broker.h). */
int mmn__client_accept(struct broker *b, int fd);
/* @c completed Hello: its deadline is off. */
void mmn__client_hello_done(struct client *c);
/* Arm broker->hello_timer for the oldest connection owing Hello (after hello_timeout_ms changed). */
void mmn__client_hello_rearm(struct broker *b);
/* 0, or -EDQUOT when @c's uid holds its max_subs_per_uid subscriptions (*msg says so). */
int mmn__client_uid_may_subscribe(const struct client *c, const char **msg);

/* A subscription of @c was created (+1) or went (-1), live or deferred: per-uid count. */
static inline void mmn__client_uid_subs(struct client *c, int delta)
{
	if (c->acct)
		c->acct->nsubs += (uint32_t)delta;
}

/* Send @env (request_id set by the caller).  Queues when the socket is full. */
int mmn__client_send(struct client *c, MmnEnvelope *env);
int mmn__client_send_error(struct client *c, uint64_t request_id, int err, const char *msg);
/*
 * Send an Invalidate/InvalidateEnd of non-blocking sub @s: while the queue is
 * overflowing these are coalesced into one whole-range pair per sub, sent
 * when the queue drains.  Returns 1 when coalesced (not sent), else as above.
 */
int mmn__client_send_nb(struct client *c, struct sub *s, MmnEnvelope *env);
/* A protocol violation: Error to the client, count it, drop it. */
void mmn__client_protocol_error(struct client *c, uint64_t request_id, int err, const char *msg);
/* Read what the client has queued now (before evicting it at a deadline). */
void mmn__client_read_now(struct client *c);
/* Queue the client for dropping at settle (never frees in place). */
void mmn__client_drop(struct client *c, int error);
void mmn__client_reap(struct broker *b);
void mmn__client_free_all(struct broker *b);
void mmn__rpc_dispatch(struct client *c, const MmnEnvelope *env, int *fds, size_t nfds);

/* seqpage.c */
int mmn__seqpage_create(struct client *c, uint32_t nslots);
void mmn__seqpage_destroy(struct client *c);
int mmn__seqpage_alloc(struct client *c, uint32_t *slot, uint32_t *gen);
void mmn__seqpage_free(struct client *c, uint32_t slot);
/* Returns the slot's new 64-bit value. */
uint64_t mmn__seqpage_begin(struct client *c, uint32_t slot);
uint64_t mmn__seqpage_end(struct client *c, uint32_t slot);
uint64_t mmn__seqpage_value(struct client *c, uint32_t slot);

/* target.c */
/* A pidfd for @pid (or a stand-in, see target.c); negative errno (-ESRCH). */
int mmn__pidfd_open(pid_t pid);
bool mmn__pidfd_alive(int pidfd, pid_t pid);
/* Find or create the target of @pid (0: @c itself).  Takes a reference. */
int mmn__target_get(struct broker *b, struct client *c, pid_t pid, struct target **out);
void mmn__target_put(struct target *t);
/* An event on @t ended; apply deferred changes if it was the last. */
void mmn__target_quiesce(struct target *t);
void mmn__target_defer(struct target *t, struct deferred *d);

/* sub.c: subscriptions, ksub coalescing, deferral */
int mmn__sub_request(struct client *c, uint64_t request_id, const Mmn__V1__Subscribe *req);
int mmn__sub_unsubscribe(struct client *c, uint64_t request_id, uint64_t sub_id);
/* Kill @s: close its pairings, release its slot; unindex now or at quiescence. */
void mmn__sub_kill(struct sub *s);
void mmn__sub_apply_deferred(struct target *t, struct deferred *d);
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

/* fanout.c */
void mmn__fanout_event(struct broker *b, const struct source_event *ev);
/*
 * Make every event's recipient array hold at least @n recipients (called
 * before a subscription is linked, @n = subscriptions after it).  0 or
 * -ENOMEM; on failure the sub must not be linked.
 */
int mmn__fanout_reserve(struct broker *b, uint32_t n);
/*
 * Test-only fault injection, 0 (off) by default: when non-zero, adding a
 * recipient to an event that already has this many fails as if the
 * allocation had, to exercise the fan-out's out-of-memory resync.
 */
extern uint32_t mmn__fanout_fault_recips;
int mmn__fanout_ack(struct client *c, uint64_t sub_id, uint64_t event_id);
/*
 * @s is going away (@keep_pairing false: its recipient entries close, the
 * pairing is closed by whoever kills it) or was unsubscribed while in flight
 * (@keep_pairing true: acks it owes no longer count, it still gets
 * InvalidateEnd).
 */
void mmn__fanout_close_sub(struct broker *b, struct sub *s, bool keep_pairing);
void mmn__fanout_flush_acks(struct broker *b);
void mmn__fanout_free_pool(struct broker *b);
/* Drain: ack every event still waiting. */
void mmn__fanout_ack_all(struct broker *b);

/* policy.c */
struct peer_creds {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool cap_sys_ptrace;
};
struct target_creds {
	uid_t uid[4]; /* real, effective, saved, fs */
	gid_t gid[4];
	bool dumpable;
};
/* Pure rule: 0 or -EPERM. */
int mmn__policy_may_watch(const struct peer_creds *peer, const struct target_creds *t);
/* Read the credentials from /proc; 0 or negative errno. */
int mmn__policy_read_target(pid_t pid, struct target_creds *out);
bool mmn__policy_peer_has_ptrace(pid_t pid);
/* Validate a Subscribe and compute the effective timeout.  0 or negative errno, *msg says why. */
int mmn__policy_check_subscribe(const struct broker *b, const Mmn__V1__Subscribe *s, struct sub_req *out,
				const char **msg);
/* Authorise @c to watch @pid (non-zero, not itself).  0 or -EPERM/-ESRCH/-EOPNOTSUPP. */
int mmn__policy_authorize(struct broker *b, struct client *c, pid_t pid, int pidfd, const struct sub_req *r,
			  const ProtobufCBinaryData *token);
int mmn__share_create(struct client *c, const Mmn__V1__Share *s, uint8_t token[16]);
void mmn__share_free_all(struct client *c);

#endif
