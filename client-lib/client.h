/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * struct mmn_client, the state of one connection to mmnd, and the map of
 * client-lib/.  Each file calls only files of the layers below it (and, in
 * the top layer, client.c calls thread.c, whose loop calls dispatch.c, and
 * batch.c calls subscribe.c).  A
 * lower layer reports upward through return values, or through
 * c->conn_ops, which the top layer sets:
 *
 *   public API  client.c     mmn_connect, mmn_disconnect, mmn_get_fd, ...
 *               batch.c      mmn_subscribe_many, mmn_unsubscribe_many
 *               subscribe.c  mmn_subscribe, mmn_unsubscribe, mmn_ack
 *               thread.c     mmn_start_thread: the library's thread
 *               dispatch.c   mmn_dispatch: reads packets, runs the callbacks
 *                   |
 *   session     session.c    what each packet of mmnd means (HelloReply,
 *                            replies, events), waiting for a reply, what a
 *                            lost connection ends; it is c->conn_ops
 *                   |
 *               resub.c      resubscribing after a reconnection
 *                   |
 *   nouns       sub.c        subscription handles and their messages
 *               queue.c      events waiting for mmn_dispatch
 *                   |
 *   connection  conn.c       socket, Hello, backoff, reading and decoding
 *                            one packet, handed up through c->conn_ops
 *                   |
 *   base        ackring.c    the ack ring: acks through shared memory
 *               seq.c        the sequence page, mmn_read_begin/retry
 *               memory.c     the memory the dispatch thread touches, and
 *                            pools of objects in it
 *               uffd.c       the userfaultfd of the uffd source
 *               fork.c       the list of clients, fork() handling
 *               error.c      the log sink, mmn_strerror
 *
 * Locks, always taken in this order:
 *   c->req_lock  one request (Subscribe, SubscribeMany) waits for its reply at
 *                a time; mmn_subscribe_many() holds it across its batches
 *   c->lock      everything in struct mmn_client and struct mmn_sub except
 *                the seq fields marked "atomic"; never held while a user
 *                callback runs, never held across a blocking wait
 *   g_lock       (fork.c) the global client list; held across fork(),
 *                never inside c->lock
 */
#ifndef MMN_CLIENT_CLIENT_H
#define MMN_CLIENT_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define MMN_REQ_TIMEOUT_MS 5000
#define MMN_BACKOFF_MIN_MS 20
#define MMN_BACKOFF_MAX_MS 1000
#define MMN_HASH_INIT_BITS 6 /* buckets of the hash of c->subs inside the client: 64 */
/*
 * Most events the dispatch thread delivers while acks of earlier ones wait
 * to be sent together (dispatch.c): a bound on how long a steady stream of
 * events can hold an ack back.
 */
#define MMN_ACK_WAIT_EVENTS 256
/*
 * Past that bound, the acks of one event still wait while the queue's next
 * event is that event's next Invalidate (mmnd awaits them all before it
 * acks the kernel, so sending part frees nothing), for this long at most:
 * well inside any ack deadline, so no acked sub is evicted for it.
 */
#define MMN_ACK_HOLD_MS 2

struct conn_ops;
struct mmn_sub;
struct mmn_ack_ring;
struct qev;
struct sub_batch;

enum conn_state {
	CONN_DOWN,  /* no socket; c->timerfd drives the next attempt */
	CONN_HELLO, /* Hello sent */
	CONN_RESUB, /* HelloReply handled, re-Subscribes in flight */
	CONN_CONNECTED,
};

struct mmn_client {
	pthread_mutex_t lock;
	pthread_mutex_t req_lock;
	pthread_cond_t cb_cond; /* with lock: a callback returned (cb_sub changed) */
	unsigned fork_gen;	/* g_fork_gen when created; a child sees a different value */
	struct mmn_client *gnext, *gprev;

	char path[108];
	int epfd;    /* what mmn_get_fd() returns: sock, wakefd, timerfd */
	int sock;    /* -1 while CONN_DOWN */
	int wakefd;  /* eventfd: queued events are due */
	bool wake_set; /* under lock: wakefd is signalled (mmn__eventfd_raise/lower) */
	int timerfd; /* reconnection backoff */
	int replyfd; /* eventfd: the pending request got its reply */
	enum conn_state state;
	const struct conn_ops *conn_ops; /* set once by mmn_connect(): what the packets mean */
	bool initial; /* inside mmn_connect(): failures are returned, not retried */
	int connect_err;
	unsigned backoff_ms;
	uint64_t conn_gen; /* bumped on every connection loss */
	int pending_error; /* reported once by mmn_dispatch() */
	uint64_t hello_req;

	/* From HelloReply. */
	uint64_t caps;
	bool needs_uffd;
	uint32_t default_ack_timeout_ms;
	uint64_t client_id;
	uint32_t max_batch; /* items per SubscribeMany/UnsubscribeMany, 0 = one request per item */
	uint32_t version;   /* protocol version of this connection (2: EventBatch, AckMany) */
	char source[16];

	/* Sequence page (seq.c). */
	void *sp_addr; /* reserved, page-rounded region; a placeholder while down */
	size_t sp_len;
	int sp_memfd; /* kept to wake futex waiters after the region is replaced */
	uint32_t nslots;
	/*
	 * The highest slot gen ever published to readers, by any mmnd: kept
	 * across reconnections, sent as Hello.gen_base - 1 (mmn.h: why gens
	 * must never repeat).  gens_from_base: this connection's mmnd honours it.
	 */
	uint32_t gen_max;
	bool gens_from_base;
	struct {
		void *addr;
		size_t len;
	} retired[16]; /* regions readers may still touch: unmapped at disconnect */
	unsigned nretired;
	/*
	 * Waiter page (seq.c): a region reserved once for the most slots, never
	 * moved until disconnect; the connection's memfd is mapped over its
	 * start while wp_live, an anonymous placeholder otherwise.
	 */
	void *wp_addr;
	size_t wp_len;
	bool wp_live;

	/* uffd source (uffd.c): what the last uffd handed to mmnd enabled. */
	uint64_t uffd_features;

	/* Requests. */
	uint64_t next_req;
	uint64_t req_id;	 /* the user request waiting for its reply, 0 = none (or answered) */
	struct mmn_sub *req_sub; /* its new sub: linked by the reply's handler, then NULL */
	/*
	 * The user's SubscribeMany waiting for its reply (req_id), NULL when the
	 * request is a Subscribe: its items' new subs, in order.  The reply's
	 * handler links each one mmnd made, sets its entry to NULL and stores
	 * each item's result in req_batch_err.  Owned by the waiter (under
	 * c->req_lock); read and written under c->lock.
	 */
	struct mmn_sub **req_batch;
	int *req_batch_err;
	size_t req_nbatch;
	struct sub_batch *batch; /* batch.c's, mapped at the first SubscribeMany (under req_lock) */
	size_t batch_len;
	uint64_t abandoned_req;	 /* timed out: a late SubscribeReply (or SubscribeManyReply) is undone */
	bool req_done;
	struct {
		int err;
		uint64_t sub_id;
		uint32_t slot, gen, ack_timeout_ms;
	} rep;

	struct mmn_sub *subs; /* live and dead subscriptions */
	/*
	 * The hash of c->subs (sub.c): 1 << hbits buckets, hinit until
	 * mmn__sub_reserve() first grows it (on a caller's thread, never on the
	 * dispatch path; a failed growth only lengthens the chains).
	 */
	struct mmn_sub **htab;
	unsigned hbits;
	size_t nsubs;  /* on c->subs */
	/*
	 * Resubscription (resub.c): the next sub of c->subs to resubscribe
	 * (NULL: all sent; mmn__sub_unlink() moves it past a removed sub), the
	 * requests in flight, the ids (without RESUB_REQ) of this connection's.
	 */
	struct mmn_sub *resub_next;
	unsigned resub_inflight;
	uint64_t resub_lo, resub_hi;
	struct mmn_sub *hinit[1u << MMN_HASH_INIT_BITS];
	struct mmn_sub *tombs, *tombs_tail;
	unsigned ntombs;

	/* Event queue (queue.c): a ring of @qcap entries, a power of two, grown only outside delivery. */
	struct qev *q;
	size_t qcap, qhead, qlen;
	size_t qmap_len;

	/*
	 * Acks of the dispatch thread not sent yet (conn.c, protocol v2): sent
	 * as one AckMany before any other message, when full, and when the
	 * dispatch thread has delivered everything it read, or
	 * MMN_ACK_WAIT_EVENTS events after the oldest (dispatch.c; up to
	 * MMN_ACK_HOLD_MS later while one event's Invalidates go on).
	 * Under c->lock; emptied when the connection is lost.
	 */
	unsigned nacks;
	unsigned ack_waited; /* events delivered since the oldest of them (dispatch.c) */
	int64_t ack_held_since; /* mmn__now_ms() when the open run was first held (MMN_ACK_HOLD_MS), or 0 */
	uint64_t ack_sub[MMN_MAX_ACKS], ack_event[MMN_MAX_ACKS];
	uint32_t ack_run[MMN_MAX_ACKS]; /* with @ack_runs: Invalidates each entry acks */
	/*
	 * AckMany runs (HelloReply.ack_runs): @run gathers the Invalidates the
	 * dispatch thread delivered one after another, of one event, acked at
	 * once or owing nothing; it becomes one entry of the acks above when
	 * broken or flushed (conn.c).  @rx_event/@rx_ord number the Invalidates
	 * of an event as they are read (session.c), delivered or not.  Under
	 * c->lock; reset when the connection is lost.
	 */
	bool ack_runs;
	/* HelloReply.ack_ring: where the acks above go instead of AckMany (ackring.h), or NULL. */
	struct mmn_ack_ring *ackring;
	uint32_t ackring_head; /* entries published so far (the ring's head is ours to write) */
	int ackring_doorbell;  /* eventfd; -1 without a ring */
	struct ack_run {
		uint64_t sub_id, event_id; /* the first Invalidate's */
		uint32_t first, next;	   /* its place, and one past the last's */
		bool open, needed;	   /* needed: some Invalidate in it asked an ack */
	} run;
	uint64_t rx_event;
	uint32_t rx_ord;

	/* Dispatch (dispatch.c). */
	bool lost_pending; /* some sub in c->subs has ->lost set */
	bool dispatching;
	pthread_t disp_thread;
	struct mmn_sub *cb_sub; /* whose callback runs now on disp_thread */

	/* Library thread (thread.c). */
	bool thread_started;
	pthread_t thread;
	int stopfd;
	void *stack;
	size_t stack_len;

	/*
	 * Receive buffers: part of this mlocked, pre-faulted allocation.  One
	 * recvmmsg() fills @rx with what mmnd queued (a fan-out to many subs
	 * is many packets); mmn__conn_read_packet() hands them up one at a
	 * time, so the queue's room is checked per packet as before.  The
	 * packets @rx_next..@rx_n-1 are read but not handled, and own their
	 * descriptors; dropped with the connection.  Under c->lock.
	 */
	size_t map_len;
	size_t arena_used;
	unsigned rx_next, rx_n;
	struct mmn_wire_packet rx[MMN_WIRE_RECV_MANY];
	uint8_t arena[32768] __attribute__((aligned(16)));
};

#endif
