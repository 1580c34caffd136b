/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn internals, shared by the files of client-lib/ (one concept each):
 *   client.c  connection, handshake, reconnection, fork handling
 *   recv.c    reading and decoding mmnd's packets, the event queue
 *   sub.c     subscribe/unsubscribe/ack, callback delivery, mmn_dispatch
 *   seq.c     the sequence page and mmn_read_begin/retry
 *   uffd.c    the userfaultfd of the uffd source (created here, owned by mmnd)
 *   thread.c  the fault-free dispatch thread
 *   fork.c    fork handling (atfork handlers, the list of clients)
 *   error.c   mmn_strerror, the log sink
 *
 * Locks, always taken in this order:
 *   c->req_lock  one request (Subscribe) waits for its reply at a time
 *   c->lock      everything in struct mmn_client and struct mmn_sub except
 *                the seq fields marked "atomic"; never held while a user
 *                callback runs, never held across a blocking wait
 *   g_lock       (fork.c) the global client list; held across fork(),
 *                never inside c->lock
 */
#ifndef MMN_CLIENT_INTERNAL_H
#define MMN_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mmn/mmn.h"
#include "seqpage.h"
#include "wire.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define MMN_REQ_TIMEOUT_MS  5000
#define MMN_MAX_OUTSTANDING 32 /* invalidations of one sub delivered, not yet ended */
#define MMN_TOMBSTONES	    64 /* removed handles kept to detect a second unsubscribe */
#define MMN_BACKOFF_MIN_MS  20
#define MMN_BACKOFF_MAX_MS  1000

enum sub_state {
	SUB_ACTIVE, /* known to mmnd (or being resubscribed) */
	SUB_DEAD,   /* released/revoked by mmnd; waits for mmn_unsubscribe() */
	SUB_GONE,   /* unsubscribed: a tombstone */
};

struct outstanding {
	uint64_t event_id;
	struct mmn_range r;
};

struct mmn_sub {
	struct mmn_client *c;

	/*
	 * Read by mmn_read_begin/retry on any thread without a lock (atomic
	 * builtins), written under c->lock.  epoch is a futex word: odd while
	 * the sub is detached from a sequence slot (reconnecting, RESYNC in
	 * flight, dead); slot/gen are valid while it is even.
	 */
	uint32_t epoch;
	uint32_t gen;
	int dead;
	const struct mmn_seqpage_slot *slot;

	/* Under c->lock. */
	enum sub_state state;
	pid_t pid;
	uint64_t start, end; /* [start, end) as subscribed */
	uint64_t sub_id;
	uint64_t resub_req; /* request id of the pending re-Subscribe, 0 = none */
	bool lost;	    /* connection lost: mmn_dispatch() ends what was delivered (c->lost_pending) */
	struct mmn_sub_opts opts;
	unsigned refs; /* queued events and the running callback pin the memory */
	struct outstanding out[MMN_MAX_OUTSTANDING];
	unsigned nout;
	struct mmn_sub *next, *prev; /* c->subs (live and dead), or c->tombs */
};

enum qev_type {
	QEV_INVALIDATE,
	QEV_END,
	QEV_RELEASE,	 /* reason */
	QEV_RESYNC,	 /* reconnected: RESYNC invalidate, attach, end */
	QEV_RESYNC_FAIL, /* reconnected but could not resubscribe: RESYNC invalidate, release(reason) */
};

struct qev {
	enum qev_type type;
	struct mmn_sub *s; /* pinned by s->refs */
	int reason;
	struct mmn_range r;
};

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
	int timerfd; /* reconnection backoff */
	int replyfd; /* eventfd: the pending request got its reply */
	enum conn_state state;
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
	char source[16];

	/* Sequence page (seq.c). */
	void *sp_addr; /* reserved, page-rounded region; a placeholder while down */
	size_t sp_len;
	int sp_memfd; /* kept to wake futex waiters after the region is replaced */
	uint32_t nslots;
	struct {
		void *addr;
		size_t len;
	} retired[16]; /* regions readers may still touch: unmapped at disconnect */
	unsigned nretired;

	/* uffd source (uffd.c): what the last uffd handed to mmnd enabled. */
	uint64_t uffd_features;

	/* Requests. */
	uint64_t next_req;
	uint64_t req_id;	 /* the user request waiting for its reply, 0 = none (or answered) */
	struct mmn_sub *req_sub; /* its new sub: linked by the reply's handler, then NULL */
	uint64_t abandoned_req;	 /* timed out: a late SubscribeReply is undone */
	bool req_done;
	struct {
		int err;
		uint64_t sub_id;
		uint32_t slot, gen, ack_timeout_ms;
	} rep;

	struct mmn_sub *subs; /* live and dead subscriptions */
	struct mmn_sub *tombs, *tombs_tail;
	unsigned ntombs;

	/* Event queue (recv.c): a ring, grown only outside delivery. */
	struct qev *q;
	size_t qcap, qhead, qlen;
	size_t qmap_len;

	/* Dispatch (sub.c). */
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

	/* Receive buffers: part of this mlocked, pre-faulted allocation. */
	size_t map_len;
	size_t arena_used;
	uint8_t rbuf[MMN_WIRE_MAX_MSG];
	uint8_t arena[32768] __attribute__((aligned(16)));
};

/* fork.c */
bool mmn__forked(const struct mmn_client *c);
void mmn__global_add(struct mmn_client *c);
void mmn__global_del(struct mmn_client *c);

/* client.c */
void mmn__conn_lost(struct mmn_client *c, int err);
int mmn__send(struct mmn_client *c, const MmnEnvelope *env, const int *fds, size_t nfds);
void mmn__conn_timer(struct mmn_client *c);
void mmn__set_connected(struct mmn_client *c);
void mmn__global_set_fd(int *where, int fd);

/* recv.c */
int mmn__pump(struct mmn_client *c, bool may_grow);
int mmn__queue_grow(struct mmn_client *c);
int mmn__wait_reply(struct mmn_client *c, uint64_t req_id);
int mmn__enqueue(struct mmn_client *c, enum qev_type type, struct mmn_sub *s, const struct mmn_range *r,
		 int reason);
bool mmn__dequeue(struct mmn_client *c, struct qev *out);
void mmn__kick(int efd);
void mmn__drain(int efd);
struct mmn_sub *mmn__sub_by_id(struct mmn_client *c, uint64_t sub_id);
int mmn__handle_hello_reply(struct mmn_client *c, const MmnEnvelope *env, int memfd);
void mmn__send_unsubscribe(struct mmn_client *c, uint64_t sub_id);

/* sub.c */
int mmn__send_subscribe(struct mmn_client *c, const struct mmn_sub *s, uint64_t req_id, bool resubscribe);
void mmn__sub_attach(struct mmn_sub *s, uint64_t sub_id, uint32_t slot, uint32_t gen, bool publish);
int mmn__sub_reply_link(struct mmn_client *c, const Mmn__V1__SubscribeReply *sr);
void mmn__sub_put(struct mmn_sub *s);
void mmn__free_subs(struct mmn_client *c);

/* seq.c */
int mmn__seqpage_map(struct mmn_client *c, int memfd, uint32_t nslots);
void mmn__seqpage_detach(struct mmn_client *c);
void mmn__seqpage_unmap_all(struct mmn_client *c);
void mmn__seq_publish(struct mmn_sub *s);
void mmn__seq_kill(struct mmn_sub *s);
void mmn__seq_detach_sub(struct mmn_sub *s);
const struct mmn_seqpage_slot *mmn__seqpage_slot(struct mmn_client *c, uint32_t idx);

/* uffd.c */
int mmn__uffd_open(struct mmn_client *c);
int mmn__uffd_check_mapped(uint64_t start, uint64_t end);

/* thread.c */
void mmn__thread_stop(struct mmn_client *c);

/* error.c */
void mmn__log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
