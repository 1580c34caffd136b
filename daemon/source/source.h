/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Event sources: where mmnd's invalidations come from.
 *
 * A source watches ranges of target address spaces ("kernel subscriptions",
 * ksubs) for the broker and reports invalidations on them.  Three exist:
 * kmod (mmn.ko over generic netlink, source/kmod*.c), uffd (a userfaultfd per
 * client process, source/uffd*.c) and test (driven in-process by tests and
 * benchmarks, source/test.c).  All run on mmnd's one libuv loop; nothing
 * here is thread-safe and no callback may block.
 *
 * Lifetime: the broker owns the source (source_new .. ops->destroy).  A ksub
 * lives from a successful ops->ksub_add until ops->ksub_del, or until the
 * source reports SOURCE_RELEASE or SOURCE_REVOKED for it, after which the
 * broker still calls ops->ksub_del exactly once to free it.
 *
 * Event contract (mirrors the kernel's, see kmod/include/uapi/linux/mmn.h):
 *   SOURCE_INVALIDATE  one mm-level invalidation; lists every ksub it touches,
 *                      each with its clipped range; one event_id.  If
 *                      needs_ack, the source holds the kernel until
 *                      ops->ack(event_id) (or the kernel's own timeout).
 *   SOURCE_INVALIDATE_END  the same event_id: the range is quiescent again.
 *                      Exactly one per SOURCE_INVALIDATE, unless a listed ksub
 *                      was released or revoked first (then that ksub's pairing
 *                      is closed by the RELEASE/REVOKED).
 *   SOURCE_RELEASE     the target address space is gone (exit, exec).
 *   SOURCE_REVOKED     the source can no longer report this ksub correctly
 *                      (lost events: the broker must resynchronise clients).
 *   SOURCE_LOST        the whole source failed (module unloaded, socket error).
 */
#ifndef MMN_DAEMON_SOURCE_H
#define MMN_DAEMON_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct source;

enum source_kind {
	SOURCE_KMOD,
	SOURCE_UFFD,
	SOURCE_TEST,
};

enum source_event_kind {
	SOURCE_INVALIDATE,
	SOURCE_INVALIDATE_END,
	SOURCE_RELEASE,
	SOURCE_REVOKED,
	SOURCE_LOST,
};

/* One touched ksub of an event: the event's range clipped to the ksub. */
struct source_event_sub {
	uint32_t ksub_id;
	uint64_t start; /* inclusive */
	uint64_t end;   /* exclusive */
};

struct source_event {
	enum source_event_kind kind;
	uint64_t event_id;   /* INVALIDATE, INVALIDATE_END */
	uint32_t event;      /* enum mmn_event / mmn.v1.EventType value */
	bool blockable;
	bool needs_ack;      /* the source waits for ops->ack(event_id) */
	bool refused;        /* not blockable and refused by the source */
	uint64_t range_start, range_end; /* unclipped, end exclusive */
	pid_t pid;           /* target, when known */
	uint32_t reason;     /* REVOKED: mmn.v1.RevokeReason; LOST: negative errno */
	size_t nsubs;
	const struct source_event_sub *subs; /* valid only during the callback */
};

/* Called by the source on the loop thread.  Must not call back into ops->destroy. */
typedef void (*source_event_fn)(const struct source_event *ev, void *userdata);

/* What a source can do; copied into HelloReply. */
struct source_caps {
	const char *name;          /* "kmod", "uffd", "test" */
	uint64_t event_mask;       /* bit (1 << EventType) it can deliver */
	bool acks_hold_kernel;     /* needs_ack really delays the kernel */
	bool events_before_change; /* INVALIDATE precedes the page-table change */
	bool needs_uffd;           /* clients must AttachUffd */
	bool other_processes;      /* can watch processes other than the client */
	/*
	 * The END of an event implies that every earlier event (lower id) of
	 * the same target is over too, so the broker may end those that are
	 * still open (their END was lost on the way).  mmn.ko: see fanout.c.
	 */
	bool end_covers_earlier;
	/*
	 * The broker watches whole granules of this size (a power of two, at
	 * least a page; 0 = a page): every ksub is an aligned extent, so a
	 * subscription next to a watched range usually costs the source
	 * nothing, and one munmap across many subscriptions touches few ksubs.
	 * Bigger granules mean fewer ksubs but more invalidations of memory
	 * nobody subscribed, which the broker acks at once.
	 */
	uint64_t ksub_granule;
};

/* The address space a ksub watches. */
struct source_target {
	pid_t pid;
	int pidfd;      /* owned by the broker; valid while any ksub on it lives */
	int uffd;       /* uffd source: the client's userfaultfd, else -1 */
	uint64_t conn;  /* uffd source: the id of the client connection attaching it */
};

struct source_ops {
	/* Start delivering events; 0 or negative errno. */
	int (*start)(struct source *s);
	/*
	 * Watch [start, start + length) of @t.  @blocking: some consumer needs
	 * acks (mmn.ko MMN_SUB_F_BLOCKING).  @timeout_ms: the source's own bound
	 * on a wait (0: its default).  Returns 0 and *@ksub_id, or -EINVAL,
	 * -ESRCH, -EPERM, -ENOSPC, -EOPNOTSUPP (not for this source), ...
	 */
	int (*ksub_add)(struct source *s, const struct source_target *t, uint64_t start, uint64_t length,
			bool blocking, uint32_t timeout_ms, uint32_t *ksub_id);
	int (*ksub_del)(struct source *s, uint32_t ksub_id);
	int (*ksub_set_blocking)(struct source *s, uint32_t ksub_id, bool blocking);
	/* Clear a ksub's desynchronised state after the broker resynchronised. */
	int (*ksub_resynced)(struct source *s, uint32_t ksub_id);
	/* Let the kernel proceed with @event_id.  -ENOENT if nobody waits (late). */
	int (*ack)(struct source *s, uint64_t event_id);
	/*
	 * uffd source: take ownership of @fd, a userfaultfd created by process
	 * @t->pid, for its connection @t->conn.  mmnd then holds the only
	 * descriptor of it: the client closes its own after sending it.
	 */
	int (*attach_uffd)(struct source *s, const struct source_target *t, int fd);
	/* uffd source: connection @conn of @pid is gone, close its uffd. */
	void (*detach_uffd)(struct source *s, pid_t pid, uint64_t conn);
	/*
	 * uffd source (NULL elsewhere): register [start, end) of @pid, rounded
	 * out to pages, with the uffd of its connection @conn, before the
	 * subscription is confirmed.  @strict (a new subscription): the whole
	 * range or an error (-EBUSY: another uffd, such as another connection
	 * of the process, has part of it; -EINVAL, -EPERM: memory that cannot
	 * be watched).  Otherwise (a re-subscription after mmnd restarted)
	 * holes and what cannot be registered are skipped.  -ENOTCONN: no uffd
	 * attached for @conn.
	 */
	int (*uffd_register)(struct source *s, pid_t pid, uint64_t conn, uint64_t start, uint64_t end,
			     bool strict);
	/*
	 * uffd source: unregister [start, end) (page rounded) from @conn's
	 * uffd, leniently (VMAs that are not ours are skipped).  The broker
	 * passes only parts no other subscription of @conn covers.
	 */
	void (*uffd_unregister)(struct source *s, pid_t pid, uint64_t conn, uint64_t start, uint64_t end);
	/* Stop, close every handle, free.  Pending waits in the kernel are released. */
	void (*destroy)(struct source *s);
};

struct source {
	const struct source_ops *ops;
	struct source_caps caps;
	uv_loop_t *loop;
	source_event_fn emit;
	void *userdata;
};

/*
 * Constructors.  Each returns 0 and a source whose emit/userdata are set, or
 * a negative errno: -ENOENT from kmod when the family does not resolve (the
 * module is absent), -EPERM without the privilege to bind.
 */
int mmn__source_kmod_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out);
int mmn__source_uffd_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out);
int mmn__source_test_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out);

/*
 * Test-only, false by default: when true the uffd source never reads a
 * client's /proc/PID/maps, as when mmnd may not, and registers leniently by
 * bisection alone.
 */
extern bool mmn__source_uffd_no_maps;

/*
 * Test source controls: inject an event as if the kernel sent it (ksub ids
 * are the ones ksub_add returned), and read back what the broker did.
 */
void mmn__source_test_inject(struct source *s, const struct source_event *ev);
bool mmn__source_test_acked(struct source *s, uint64_t event_id);
size_t mmn__source_test_nksubs(struct source *s);
bool mmn__source_test_ksub_blocking(struct source *s, uint32_t ksub_id);
/* Called on the loop thread when the broker acks @event_id (benchmarks time the round trip). */
void mmn__source_test_set_ack_hook(struct source *s, void (*fn)(uint64_t event_id, void *ud), void *ud);
/*
 * Inject an invalidation of [start, end) of @pid the way mmn.ko would: every
 * live ksub of @pid it touches is listed with its clipped range; needs_ack
 * when @blockable and a touched ksub is blocking, refused when not
 * @blockable and one is.  Returns the event id, or 0 when no ksub is
 * touched (nothing is emitted then, as the kernel would send nothing).
 */
uint64_t mmn__source_test_invalidate(struct source *s, pid_t pid, uint64_t start, uint64_t end, uint32_t event,
				     bool blockable);
/* Emit SOURCE_INVALIDATE_END for @event_id. */
void mmn__source_test_end(struct source *s, uint64_t event_id);
/* The target exited: emit SOURCE_RELEASE for each live ksub of @pid; returns how many. */
size_t mmn__source_test_release(struct source *s, pid_t pid);
/* How many times the broker acked @event_id (of the last 4096 events). */
unsigned mmn__source_test_ack_count(struct source *s, uint64_t event_id);
/* Live ksubs of @pid: ranges and blocking flags, for tests (returns the count, fills up to @max). */
size_t mmn__source_test_ksubs(struct source *s, pid_t pid, uint64_t *starts, uint64_t *ends, bool *blocking,
			      size_t max);

#endif
