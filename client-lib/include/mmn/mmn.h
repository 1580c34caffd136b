/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn: user-space mmu interval notifiers.  Link with `pkg-config --libs mmn`.
 *
 * Conventions: every int-returning function returns 0 (or a documented
 * non-negative value) on success and a negative errno on failure, like sd-bus
 * and libnl; mmn_strerror() explains mmn-specific meanings.  Option structs
 * start with a size field so they can grow without breaking the ABI.  The
 * library never writes to stderr, installs no signal handler and never exits;
 * see mmn_set_log_fn().
 *
 * Threads: every function may be called from any thread.  Callbacks run on the
 * thread that dispatches (mmn_dispatch() or the library thread of
 * mmn_start_thread()), never with a library lock held, so a callback may call
 * mmn_ack(), mmn_subscribe() and mmn_unsubscribe() (also on its own
 * subscription).  mmn_read_begin()/mmn_read_retry() are lock-free and safe
 * from any thread.
 *
 * Locks: each client has one mutex, plus one that serialises requests
 * waiting for mmnd's reply (order: request lock, client mutex).  Neither is
 * held while a callback runs, so callbacks may take your own locks (a
 * device lock, as in examples/mirror.c).  mmn_unsubscribe() called on
 * another thread waits for a running callback of that subscription: do not
 * call it while holding a lock that callback takes.
 *
 * Self-subscription rule: while the kernel waits for a blocking ack it may
 * hold the target's mmap lock.  When the target is the calling process, the
 * thread that acks (the dispatching thread and every callback it runs, or the
 * thread calling mmn_ack() after MMN_ACK_LATER) must not page-fault on memory
 * that is not resident, must not allocate memory that may need new pages and
 * must not call mmap/munmap/mprotect/madvise or read /proc/self/maps: it would
 * wait for the mmap lock until the ack deadline.  With automatic NUMA
 * balancing, resident memory faults too: the kernel samples anonymous pages
 * by making them inaccessible for a while, locked ones included, except in
 * mappings with a memory policy of their own.  mmn_start_thread() runs a
 * fault-free thread (locked, pre-faulted stack and buffers, all of it and
 * the C library's data bound with mbind(MPOL_LOCAL), which keeps it out of
 * that sampling, and its malloc arena attached before the first event, so
 * that a first free() in a callback maps nothing); keep your callbacks
 * fault-free too (touch only locked or already resident memory, mbound with
 * MPOL_LOCAL as examples/mirror.c does its table; a heap that grows or
 * shrinks maps).  The sampling itself is done by a thread of the process,
 * on its way back to user space from a timer interrupt, at any
 * instruction; it changes the protection of the process's mappings and so
 * waits for blocking acks like an mprotect().  A thread that holds a lock
 * your callback takes (the driver lock of examples/mirror.c) would then wait
 * for a callback that waits for it: give such threads a memory policy of
 * their own, set_mempolicy(MPOL_LOCAL, NULL, 0) (libnuma:
 * numa_set_localalloc()); the sampling a thread does skips every mapping
 * without a policy of its own when the thread's policy lacks MPOL_F_MOF.
 * The library's thread does so.  In a memory cgroup above memory.high, a
 * thread that charges memory (a new page, or kernel memory such as the
 * buffer of a socket or pipe write) reclaims, which may wait for blocking
 * acks, and then sleeps, for up to 2 s, on its way back to user space.  The
 * library's thread charges nothing: it acks through memory it shares with
 * mmnd and an eventfd, not through its socket, and so does mmn_ack().  Keep
 * callbacks, and threads while they hold a lock a callback takes, from
 * charging memory too.
 *
 * userfaultfd source (no module): the process's munmap/madvise/mremap/fork
 * of a subscribed range wait until mmnd has read the event from the
 * userfaultfd the library handed it.  The library keeps no descriptor of it
 * (mmnd registers the ranges), so when mmnd dies the userfaultfd is released
 * and such waits end at once, whether or not anything dispatches.
 *
 * fork(): a child must not use its parent's connection.  In a child every call
 * on a client inherited from the parent returns -ECHILD (mmn_read_retry()
 * returns true); only mmn_disconnect() is allowed there, to free the memory.
 */
#ifndef MMN_MMN_H
#define MMN_MMN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MMN_BUILDING_LIBRARY)
#define MMN_EXPORT __attribute__((visibility("default")))
#else
#define MMN_EXPORT
#endif

struct mmn_client; /* one connection to mmnd */
struct mmn_sub;	   /* one subscription: a VA range of a target process */

/* Why the range is being invalidated (mmn.v1.EventType). */
enum mmn_event {
	MMN_EVENT_UNMAP,
	MMN_EVENT_CLEAR,
	MMN_EVENT_PROTECTION_VMA,
	MMN_EVENT_PROTECTION_PAGE,
	MMN_EVENT_SOFT_DIRTY,
	MMN_EVENT_RELEASE,
	MMN_EVENT_MIGRATE,
	MMN_EVENT_EXCLUSIVE,
	MMN_EVENT_REMOVE, /* uffd source: madvise(MADV_DONTNEED/MADV_REMOVE) */
	MMN_EVENT_REMAP,  /* uffd source: mremap moved the range away */
	MMN_EVENT_RESYNC, /* library: reconnected, everything may have changed */
};

/*
 * One invalidation, clipped to the subscription: [start, end).  seq is the
 * sequence value mmnd reported, event_id is what mmn_ack() names.
 * needs_ack (an addition to the v1 API, appended so the layout of the fields
 * before it is unchanged): this invalidation waits for an ack.
 */
struct mmn_range {
	uint64_t start, end;
	enum mmn_event event;
	bool blockable;
	uint64_t seq;
	uint64_t event_id;
	bool needs_ack;
};

enum {
	MMN_SUB_BLOCKING = 1u << 0,    /* the kernel waits for my ack */
	MMN_SUB_NONBLOCKING = 1u << 1, /* tell me, never wait for me */
};

enum {
	MMN_ACK_LATER = 1, /* invalidate callback: I will call mmn_ack() myself */
};

/*
 * release() reasons: >= 0 come from mmnd (mmn.v1.RevokeReason, and 0 for
 * "the target address space is gone"); < 0 are negative errnos from the
 * library (e.g. -ENOMEM: after a reconnection the range could not be
 * watched again; -ESTALE, -ERANGE: see mmn_read_begin()).
 */
enum {
	MMN_RELEASE_TARGET_GONE = 0,
	MMN_RELEASE_TIMEOUT = 1,     /* missed the ack deadline: evicted */
	MMN_RELEASE_ADMIN = 2,	     /* evicted by an administrator */
	MMN_RELEASE_DESYNC = 3,	     /* events were lost */
	MMN_RELEASE_SOURCE_GONE = 4, /* the event source went away */
	MMN_RELEASE_SHUTDOWN = 5,    /* mmnd is stopping */
};

struct mmn_sub_opts {
	size_t size;		 /* sizeof(struct mmn_sub_opts) */
	uint32_t flags;		 /* MMN_SUB_BLOCKING or MMN_SUB_NONBLOCKING */
	uint64_t event_mask;	 /* bit (1 << enum mmn_event); 0 = all */
	uint32_t ack_timeout_ms; /* 0 = daemon default */
	/* Required.  Return 0 when done (the library acks if needed), or MMN_ACK_LATER. */
	int (*invalidate)(struct mmn_sub *, const struct mmn_range *, void *userdata);
	void (*invalidate_end)(struct mmn_sub *, const struct mmn_range *, void *userdata);
	void (*release)(struct mmn_sub *, int reason, void *userdata); /* target gone or revoked */
	void *userdata;
};

/**
 * mmn_connect() - connect to mmnd.
 * @socket_path: NULL for $MMN_SOCKET, or /run/mmn/mmnd.sock when unset.
 * @out: the new client.
 *
 * Performs the Hello handshake (waits at most 5 s), maps the shared sequence
 * page and, when the daemon's source needs it (uffd), creates this process's
 * userfaultfd and hands it to mmnd (keeping no descriptor of it).
 * Return: 0, or -EINVAL, -ENOENT/-ECONNREFUSED (no daemon), -ETIMEDOUT,
 * -EPROTONOSUPPORT (no common protocol version), -EBADMSG/-EPROTO (bad reply),
 * the errno mmnd refused the connection with (-EUSERS: too many clients,
 * -ESHUTDOWN: stopping, -EPERM), -ENOMEM, -EOPNOTSUPP (userfaultfd unavailable).
 */
MMN_EXPORT int mmn_connect(const char *socket_path, struct mmn_client **out);

/**
 * mmn_disconnect() - stop the library thread, remove every subscription and
 * free @c and every mmn_sub of it.  No callback runs after it returns.  NULL
 * is allowed.  Must not be called from a callback.
 */
MMN_EXPORT void mmn_disconnect(struct mmn_client *c);

/**
 * mmn_get_fd() - a descriptor to poll for POLLIN; then call mmn_dispatch().
 * It stays the same across reconnections.  Return: the fd or -EINVAL/-ECHILD.
 */
MMN_EXPORT int mmn_get_fd(struct mmn_client *c);

/**
 * mmn_dispatch() - read what mmnd sent, drive reconnection and run the due
 * callbacks on the calling thread.  Never blocks (bounded work per call; the
 * fd stays readable while more is due).
 * Return: the number of callbacks run (>= 0); -EBUSY when another thread is
 * dispatching (e.g. the library thread); -EBADMSG/-EPROTO/-ECONNRESET once
 * when the connection was dropped (the library then reconnects by itself).
 */
MMN_EXPORT int mmn_dispatch(struct mmn_client *c);

/**
 * mmn_start_thread() - dispatch on a library thread instead.  The thread
 * blocks all signals and runs fault-free (see the self-subscription rule).
 * Return: 0, -EALREADY, -EAGAIN/-ENOMEM.
 */
MMN_EXPORT int mmn_start_thread(struct mmn_client *c);

/**
 * mmn_capabilities() - bit (1 << enum mmn_event) for every event the active
 * source delivers, plus MMN_CAP_* bits below.  0 for an invalid @c.
 */
#define MMN_CAP_ACKS_HOLD_KERNEL     (1ull << 62) /* a blocking ack really delays the kernel */
#define MMN_CAP_EVENTS_BEFORE_CHANGE (1ull << 61) /* invalidate arrives before the change */
#define MMN_CAP_SELF_ONLY	     (1ull << 60) /* only pid 0 (self) can be watched (uffd) */
MMN_EXPORT uint64_t mmn_capabilities(struct mmn_client *c);

/**
 * mmn_subscribe() - watch [start, start + length) of process @pid (0 = self).
 * Waits for mmnd's reply (at most 5 s).  The subscription is live from that
 * reply on: with another thread dispatching (mmn_start_thread()), callbacks
 * for it may run, with the new handle, before mmn_subscribe() returns.
 * Return: 0; -EINVAL (bad argument, length 0, flags not exactly one of
 * BLOCKING/NONBLOCKING, unknown event bits, no invalidate callback);
 * -EOVERFLOW (range wraps or passes the end of the user address space);
 * -E2BIG (opts->size larger than known with non-zero trailing bytes);
 * -ENOTCONN (reconnecting, try again); uffd source: -EOPNOTSUPP (@pid is not
 * this process), -ENOMEM (range not fully mapped), -EINVAL (memory type not
 * supported), -EBUSY (the range is already registered by another
 * userfaultfd, e.g. a second mmn_client of this process subscribed an
 * overlapping range: use one client per process), -EAGAIN (a fork() was in
 * flight on another thread: try again); errors from mmnd
 * (-EPERM, -ESRCH, -ENOSPC, -ERANGE: the client used every generation,
 * see mmn_read_begin(), ...).
 */
MMN_EXPORT int mmn_subscribe(struct mmn_client *c, pid_t pid, uint64_t start, uint64_t length,
			     const struct mmn_sub_opts *opts, struct mmn_sub **out);

/* One item of mmn_subscribe_many(). */
struct mmn_sub_request {
	pid_t pid;			 /* 0 = self */
	uint64_t start, length;
	const struct mmn_sub_opts *opts; /* as for mmn_subscribe() */
	struct mmn_sub *sub;		 /* out: the new handle, or NULL */
	int error;			 /* out: 0 or a negative errno, as mmn_subscribe() would return */
};

/**
 * mmn_subscribe_many() - subscribe every item of @reqs, in order, as
 * mmn_subscribe() would, in as few round trips as mmnd allows: batches of
 * at most the HelloReply's max_batch items (the library caps it at 123, so
 * that a reply fits in one packet), each within mmnd's 4096-byte packets.
 * An mmnd without batches (max_batch 0) gets one request per item, with the
 * same results.  Items fail independently: each gets its handle in ->sub and
 * 0 in ->error, or NULL and the errno mmn_subscribe() would return (checks
 * of the arguments are made locally, without a round trip; an error mmnd
 * gives for a whole batch is every item's of that batch).  Callbacks of the
 * new subscriptions may run before it returns, as with mmn_subscribe().
 * Return: the number of items that succeeded (0..@n), or a negative errno
 * when nothing was sent: -EINVAL (@c NULL, @reqs NULL with @n > 0, @n above
 * INT_MAX), -ECHILD, -ENOTCONN (reconnecting: every item not failed by its
 * own arguments gets -ENOTCONN too).
 */
MMN_EXPORT int mmn_subscribe_many(struct mmn_client *c, struct mmn_sub_request *reqs, size_t n);

/**
 * mmn_unsubscribe_many() - remove each handle of @subs as mmn_unsubscribe()
 * would, in order; mmnd is told in batches.  The handles may belong to
 * different clients.  @errors (NULL allowed) gets each item's result: 0,
 * -EINVAL (NULL), -EALREADY (removed before, see mmn_unsubscribe()), -ECHILD.
 * Return: the number removed, or -EINVAL (@subs NULL with @n > 0, @n above
 * INT_MAX).
 */
MMN_EXPORT int mmn_unsubscribe_many(struct mmn_sub **subs, size_t n, int *errors);

/**
 * mmn_unsubscribe() - remove @s and free it.  Before it returns, the
 * library calls invalidate_end for every invalidation of @s still
 * outstanding (so the pairing rule holds), on the calling thread.  May be
 * called from any callback, including one of @s itself.  After it returns no
 * callback of @s runs.  Calling it again on the same handle returns
 * -EALREADY as long as the handle memory has not been recycled (the 64 most
 * recently removed handles are kept); later calls are use-after-free.
 * Return: 0, -EINVAL, -EALREADY, -ECHILD.
 */
MMN_EXPORT int mmn_unsubscribe(struct mmn_sub *s);

/**
 * mmn_ack() - acknowledge @event_id of @s (after MMN_ACK_LATER).
 * Return: 0 (also when the event is already over), -EINVAL, -EALREADY
 * (subscription removed), -ECHILD, or a send error.
 */
MMN_EXPORT int mmn_ack(struct mmn_sub *s, uint64_t event_id);

/**
 * mmn_read_begin() - like mmu_interval_read_begin(): a sequence value to
 * pass to mmn_read_retry().  Waits (futex) while an invalidation of @s is in
 * flight and while the library is reconnecting.  No syscall otherwise.
 * For a released/revoked subscription (and in a fork child, and for NULL)
 * it returns at once a value every mmn_read_retry() reports as a
 * collision.  Must not be called from a callback (it could wait for the
 * invalidation that callback handles).  The value is the subscription's
 * slot word as mmnd wrote it: gen << 32 | seq, seq even.
 */
/**
 * mmn_read_retry() - true: an invalidation collided since mmn_read_begin()
 * returned @seq (or the library is disconnected, or @s was released): drop
 * what you built and retry.  Lock-free, no syscall.
 */

/*
 * Both are inline, as in the kernel: mmn_read_retry() is two loads and a
 * compare (the slot's address, the slot); mmn_read_begin() one load more
 * (the expected gen) and calls mmn_read_begin_slow2() for everything but
 * the quiescent case: waiting, reconnection, a released subscription, a
 * fork child, a NULL handle.  They read the first bytes of struct mmn_sub,
 * laid out as struct mmn_sub_seq below, and the sequence page mmnd writes
 * (one 64-bit word per subscription: gen << 32 | seq, seq odd while an
 * invalidation is in flight).
 *
 * Why one compare is exact: a client's gens never repeat.  Every Hello asks
 * mmnd to start at one above the highest gen the client was ever given (by
 * any mmnd, across reconnections), and mmnd never wraps; within one gen
 * (one attachment of one subscription to a slot) seq only grows.  So a
 * value from before an invalidation, a release or a reconnection never
 * equals the word after it, even when a new mmnd reuses the slot and seq.
 * Limits: after gen 2^32 - 1 (subscriptions and resubscriptions over the
 * client's life) mmn_subscribe() fails with -ERANGE and a reconnection
 * releases the subscriptions with -ERANGE: connect a new client.  An
 * mmnd older than this (HelloReply.gens_from_base false) gives gens from 1
 * on every connection: on a reconnection to it, once the client was given
 * any gen, every subscription is released with -ESTALE (its old values
 * could match again; no one-compare test can tell) and must be subscribed
 * again; a client's first connection to it works as usual.
 *
 * The library keeps these invariants (it writes under its lock, readers
 * take no lock):
 *  - word points to the subscription's slot only while the subscription is
 *    attached to a live connection; otherwise (connecting, RESYNC being
 *    delivered, released, removed) to a library word that is always odd.
 *  - cookie is gen << 32 | epoch for the slot word points to: gen is the
 *    generation mmnd gave the slot (never 0); epoch is even and grows at
 *    every attachment (read by programs of ABI 1 only).
 *  - cookie is stored before word (release), so a reader that loads word
 *    (acquire) then cookie never sees a cookie older than its word.
 *  - in a fork child, the page under every word reads as zeros (gen 0
 *    matches no cookie), so the child's mmn_read_begin() takes the slow
 *    path, whose value (odd, not the library word's) no word ever holds.
 *
 * ABI: the layout of struct mmn_sub_seq and the meaning of its fields and
 * of the value are version MMN_SEQ_ABI, bound to the slow path's symbol,
 * which every program inlining these functions needs: ABI 2 (the value is
 * the slot word) is mmn_read_begin_slow2 of version node MMN_1.3.  Programs
 * built against ABI 1 (same layout, the value epoch << 32 | seq, checked
 * against cookie too) call mmn_read_begin_slow@MMN_1.2, which the library
 * still serves in that format; a library without a layout's symbol makes
 * such a program fail to load instead of misreading.  Programs built
 * against an older mmn.h call the exported mmn_read_begin/mmn_read_retry
 * (MMN_1.0, ABI 1's values), which stay; define MMN_NO_INLINE before
 * including mmn.h to call those too (e.g. through an FFI, or to keep the
 * layout out of a binary).
 */
#define MMN_SEQ_ABI 2

struct mmn_sub_seq {
	const uint64_t *word; /* the slot: gen << 32 | seq (little endian: seq is the futex word) */
	uint64_t cookie;      /* gen << 32 | epoch */
};

/* Everything mmn_read_begin() does, for the cases the inline path leaves to it (ABI 2). */
MMN_EXPORT uint64_t mmn_read_begin_slow2(struct mmn_sub *s);
/* The same in ABI 1's format, for programs built against it. */
MMN_EXPORT uint64_t mmn_read_begin_slow(struct mmn_sub *s);

/* The inline fast paths; not API on their own. */
static inline int mmn__seq_begin(const struct mmn_sub_seq *q, uint64_t *seq)
{
	const uint64_t *w = __atomic_load_n(&q->word, __ATOMIC_ACQUIRE);
	uint64_t cookie = __atomic_load_n(&q->cookie, __ATOMIC_RELAXED);
	uint64_t v = __atomic_load_n(w, __ATOMIC_ACQUIRE);

	/* Same gen, seq even (epoch is even: bit 0 of the xor is seq's). */
	*seq = v;
	return !((v ^ cookie) & 0xffffffff00000001ull);
}

static inline int mmn__seq_retry(const struct mmn_sub_seq *q, uint64_t seq)
{
	/* Order the caller's reads (its mapping) before the check, like smp_rmb(). */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(__atomic_load_n(&q->word, __ATOMIC_ACQUIRE), __ATOMIC_ACQUIRE) != seq;
}

#if defined(MMN_BUILDING_LIBRARY) || defined(MMN_NO_INLINE)
MMN_EXPORT uint64_t mmn_read_begin(struct mmn_sub *s);
MMN_EXPORT bool mmn_read_retry(struct mmn_sub *s, uint64_t seq);
#else
static inline uint64_t mmn_read_begin(struct mmn_sub *s)
{
	uint64_t seq;

	if (__builtin_expect(!s || !mmn__seq_begin((const struct mmn_sub_seq *)(void *)s, &seq), 0))
		seq = mmn_read_begin_slow2(s);
	return seq;
}

static inline bool mmn_read_retry(struct mmn_sub *s, uint64_t seq)
{
	return !s || mmn__seq_retry((const struct mmn_sub_seq *)(void *)s, seq);
}
#endif

/** mmn_strerror() - text for a (negative or positive) errno returned by libmmn. */
MMN_EXPORT const char *mmn_strerror(int err);

/**
 * mmn_set_log_fn() - process-wide log sink for diagnostics (syslog
 * priorities LOG_ERR..LOG_DEBUG); messages above @max_priority are dropped.
 * NULL (the default) keeps the library silent.  May be called from any
 * thread; @fn may run on the library thread, so it must be fault-free too
 * when self-subscribing with blocking acks.
 */
typedef void (*mmn_log_fn)(int priority, const char *msg, void *userdata);
MMN_EXPORT void mmn_set_log_fn(mmn_log_fn fn, int max_priority, void *userdata);

/** mmn_sub_userdata() - opts->userdata of @s (NULL for NULL). */
MMN_EXPORT void *mmn_sub_userdata(struct mmn_sub *s);

#ifdef __cplusplus
}
#endif

#endif
