/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The userfaultfd source: invalidations of a client's own memory without
 * mmn.ko, on any stock kernel (see source.h for the event contract).
 *
 * How it works.  libmmn creates a userfaultfd in the client process
 * (UFFD_USER_MODE_ONLY, so no privilege is needed), enables the
 * non-cooperative events UNMAP, REMOVE, REMAP and, when the client may
 * (CAP_SYS_PTRACE), FORK, hands the fd to mmnd (AttachUffd, SCM_RIGHTS) and
 * closes its own: mmnd holds the only descriptor, so when mmnd dies the
 * kernel releases the uffd and no client thread waits for a dead reader.
 * The broker passes it to ops->attach_uffd() with the connection's id; from
 * then on this file owns it.  For each subscription the broker has it
 * register the range (ops->uffd_register, before SubscribeReply; strictly for
 * a new subscription, leniently for a re-subscription after a restart) in
 * UFFDIO_REGISTER_MODE_WP without ever write-protecting anything (so no page
 * fault is ever delivered), and unregister it (ops->uffd_unregister) where
 * no other subscription of the connection covers it.  This file polls the
 * uffd on the loop and turns each uffd_msg into one
 * SOURCE_INVALIDATE immediately followed by its SOURCE_INVALIDATE_END, both
 * listing every ksub of that target the event overlaps, clipped to it:
 *
 *   UFFD_EVENT_UNMAP  [start, end)       -> EVENT_UNMAP (munmap, MAP_FIXED
 *                                           over it, mremap shrink, brk)
 *   UFFD_EVENT_REMOVE [start, end)       -> EVENT_REMOVE (MADV_DONTNEED,
 *                                           MADV_FREE, MADV_REMOVE)
 *   UFFD_EVENT_REMAP  from, to, len      -> EVENT_REMAP on [from, from + len)
 *                                           (the old range; Linux then also
 *                                           queues an UNMAP of it, from
 *                                           move_vma; a MREMAP_FIXED
 *                                           destination that was registered
 *                                           gets its own UNMAP first)
 *   UFFD_EVENT_FORK   ufd of the child   -> EVENT_PROTECTION_PAGE on every
 *                                           ksub of the parent, whole (the
 *                                           parent's COW write-protection;
 *                                           mmn.ko reports exactly that).
 *                                           The child's new uffd, installed
 *                                           in mmnd's fd table by the read,
 *                                           is closed: children are not
 *                                           watched.
 *   UFFD_EVENT_PAGEFAULT                 -> never expected; counted, logged
 *                                           (rate-limited) and resolved
 *                                           (write-protection cleared, or
 *                                           UFFDIO_WAKE) so the client's
 *                                           thread never hangs.
 *
 * Why acks cannot hold the kernel, and why unmap is reported after the fact:
 * the non-cooperative events are not page faults.  The kernel queues the
 * message and puts the thread that caused it to sleep (TASK_KILLABLE) only
 * until some reader read()s that message from the uffd, nothing more.  UNMAP
 * and REMAP are queued after the page tables were already changed and the
 * mmap lock dropped (userfaultfd_unmap_complete, mremap_userfaultfd_complete);
 * REMOVE is queued before the zap, but the zap proceeds as soon as mmnd has
 * read the message, in parallel with the fan-out; FORK is queued after the
 * parent's page tables were copied and write-protected.  So needs_ack is
 * always false, events_before_change is false, and the read itself is the
 * only thing a client's munmap waits for: the loop reads every message as
 * soon as the fd polls readable.
 *
 * Lifetimes.  A target (one per process with an attached uffd, looked up by
 * pid) lives from its first attach_uffd until its last detach_uffd AND the
 * deletion of its last ksub.  Its uffds (one per connection of the process,
 * found by connection id, each with the ranges registered for it) and a dup
 * of the broker's pidfd (to report SOURCE_RELEASE
 * when the process exits: exit_mmap sends no uffd event) are each watched by
 * a uv_poll_t in a separately allocated `struct watch` that its close
 * callback frees, so closing a watch never has to wait for the loop.  The
 * source itself is freed from the close callback of its `defer` idle handle:
 * run the loop once after ops->destroy().  Nothing here is thread-safe: all
 * of it runs on mmnd's loop thread.
 *
 * Reentrancy.  The broker may call any op except destroy from the emit
 * callback.  While an event is being emitted its target is pinned
 * (target->busy) so that detach_uffd/ksub_del inside the callback cannot free
 * it under us; the ksubs listed are copied to a scratch array first.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine/itree.h"
#include "log.h"
#include "mmn.pb-c.h"
#include "source/source.h"

/* mmn.v1.EventType (= enum mmn_event) values this source emits. */
#define EV_UNMAP	   MMN__V1__EVENT_TYPE__EVENT_UNMAP
#define EV_PROTECTION_PAGE MMN__V1__EVENT_TYPE__EVENT_PROTECTION_PAGE
#define EV_REMOVE	   MMN__V1__EVENT_TYPE__EVENT_REMOVE
#define EV_REMAP	   MMN__V1__EVENT_TYPE__EVENT_REMAP
#define REVOKE_SOURCE_GONE MMN__V1__REVOKE_REASON__REVOKE_SOURCE_GONE

#define UFFD_MASK_REQUIRED (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP)

/* Messages read per read(2); a callback reads at most MAX_BATCHES of them. */
#define UFFD_BATCH  32
#define MAX_BATCHES 8

/* Highest user address any supported architecture has (x86-64 LA57: 2^56). */
#define USER_ADDR_LIMIT	     (1ULL << 57)
#define MAX_KSUBS_PER_TARGET 65536

struct uffd_source;
struct target;

/* A range registered with a uffd by uffd_register, page aligned, end exclusive. */
struct reg {
	uint64_t start, end;
};

/*
 * One polled fd: a uffd or a pidfd.  Freed (with @regs) by its close
 * callback; @t is cleared when detached.
 */
struct watch {
	uv_poll_t poll;
	int fd;
	struct target *t;
	uint64_t conn;	  /* a uffd: the client connection that attached it */
	struct reg *regs; /* a uffd: one entry per successful uffd_register, a multiset */
	size_t nregs, capregs;
};

struct ksub {
	struct itree_node node; /* [start, end - 1] in target->index */
	uint32_t id;
	uint64_t start, end; /* end exclusive */
	struct target *t;
	bool blocking; /* recorded only: acks never hold the kernel here */
	bool closed;   /* RELEASE or REVOKED reported: no further events */
};

enum close_reason {
	CLOSE_NONE,
	CLOSE_REVOKED, /* uffd detached while the process lives: nobody reports for it any more */
	CLOSE_RELEASE, /* the process exited */
};

struct target {
	struct uffd_source *s;
	struct target *prev, *next; /* s->targets */
	pid_t pid;
	bool linked;	      /* attached: found by pid; false once detached */
	bool dead;	      /* exited, or every uffd failed: nothing more will be reported */
	bool fork_events;     /* some client enabled UFFD_FEATURE_EVENT_FORK */
	unsigned attached;    /* attach_uffd calls not yet matched by a detach_uffd */
	struct watch **uffds; /* every uffd of this process mmnd holds and reads */
	size_t nuffds, capuffds;
	struct watch *pidfd; /* NULL when unknown or closed */
	struct itree index;  /* ksubs by range */
	size_t nksubs;
	enum close_reason pending; /* close every open ksub from the deferred callback */
	unsigned busy;		   /* pinned while its events are emitted */
};

struct uffd_source {
	struct source src; /* first: the broker sees a struct source */
	struct target *targets;
	/* Every live ksub, sorted by id, for ksub_del and friends. */
	struct ksub **byid;
	size_t nbyid, capbyid;
	uint32_t next_id;
	uint64_t next_event;
	/* Scratch for one event's clipped ksubs; valid only while emitting. */
	struct source_event_sub *scratch;
	size_t nscratch, capscratch;
	/* Closing ksubs (RELEASE/REVOKED) is deferred to here, out of the broker's calls. */
	uv_idle_t defer;
	/* An fd kept open to survive EMFILE: a FORK message needs a free fd to be read. */
	int reserve_fd;
	uint64_t faults;	 /* page faults seen (misuse by the client) */
	struct ratelimit log_rl; /* everything logged here a client can trigger */
};

static struct uffd_source *to_uffd(struct source *s)
{
	return (struct uffd_source *)s;
}

/* ---- watches ---- */

static void watch_free_cb(uv_handle_t *h)
{
	struct watch *w = h->data;

	free(w->regs);
	free(w);
}

static int watch_open(struct uffd_source *s, struct target *t, int fd, uv_poll_cb cb, struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	r = uv_poll_init(s->src.loop, &w->poll, fd);
	if (r < 0) {
		free(w);
		return r;
	}
	w->poll.data = w;
	w->fd = fd;
	w->t = t;
	r = uv_poll_start(&w->poll, UV_READABLE, cb);
	if (r < 0) {
		uv_close((uv_handle_t *)&w->poll, watch_free_cb);
		return r;
	}
	*out = w;
	return 0;
}

/*
 * uv_close() stops the poll (epoll_ctl DEL) at once, so the fd can be closed
 * right away; the watch memory goes in the close callback.  Closing a uffd
 * makes the kernel unregister the client's ranges and wake every thread still
 * waiting for one of its events to be read.
 */
static void watch_close(struct watch **wp)
{
	struct watch *w = *wp;

	if (!w)
		return;
	*wp = NULL;
	w->t = NULL;
	uv_close((uv_handle_t *)&w->poll, watch_free_cb);
	close(w->fd);
}

/* ---- targets and ksubs ---- */

static int uffds_add(struct target *t, struct watch *w)
{
	if (t->nuffds == t->capuffds) {
		size_t cap = t->capuffds ? t->capuffds * 2 : 2;
		struct watch **p = realloc(t->uffds, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->uffds = p;
		t->capuffds = cap;
	}
	t->uffds[t->nuffds++] = w;
	return 0;
}

/* Close t->uffds[i]; the last one takes its place. */
static void uffds_close(struct target *t, size_t i)
{
	watch_close(&t->uffds[i]);
	t->uffds[i] = t->uffds[--t->nuffds];
}

static void uffds_close_all(struct target *t)
{
	while (t->nuffds)
		uffds_close(t, t->nuffds - 1);
}

static void uffds_close_watch(struct target *t, struct watch *w)
{
	for (size_t i = 0; i < t->nuffds; i++) {
		if (t->uffds[i] == w) {
			uffds_close(t, i);
			return;
		}
	}
}

static struct target *target_find(struct uffd_source *s, pid_t pid)
{
	struct target *t;

	for (t = s->targets; t; t = t->next)
		if (t->linked && t->pid == pid)
			return t;
	return NULL;
}

/* Free @t once nobody can reach it any more. */
static void target_maybe_free(struct target *t)
{
	struct uffd_source *s = t->s;

	if (t->linked || t->nksubs || t->busy)
		return;
	uffds_close_all(t);
	free(t->uffds);
	watch_close(&t->pidfd);
	if (t->prev)
		t->prev->next = t->next;
	else
		s->targets = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
}

/* Index in s->byid of the first ksub whose id is >= @id. */
static size_t byid_lower(const struct uffd_source *s, uint32_t id)
{
	size_t lo = 0, hi = s->nbyid;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->byid[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct ksub *ksub_find(struct uffd_source *s, uint32_t id)
{
	size_t i = byid_lower(s, id);

	return i < s->nbyid && s->byid[i]->id == id ? s->byid[i] : NULL;
}

/* A fresh non-zero id not in use (ids wrap after 2^32 allocations). */
static uint32_t ksub_new_id(struct uffd_source *s)
{
	for (;;) {
		uint32_t id = s->next_id++;

		if (id && !ksub_find(s, id))
			return id;
	}
}

static int scratch_reserve(struct uffd_source *s, size_t n)
{
	struct source_event_sub *p;
	size_t cap;

	if (n <= s->capscratch)
		return 0;
	cap = s->capscratch ? s->capscratch : 16;
	while (cap < n)
		cap *= 2;
	p = realloc(s->scratch, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	s->scratch = p;
	s->capscratch = cap;
	return 0;
}

struct collect {
	struct uffd_source *s;
	uint64_t start, end; /* the event's range, end exclusive */
	int err;
};

/* itree visitor: append the open ksub @n clipped to the event's range. */
static int collect_one(struct itree_node *n, void *ud)
{
	struct collect *c = ud;
	struct ksub *k = (struct ksub *)n;
	struct source_event_sub *e;

	if (k->closed)
		return 0;
	if (scratch_reserve(c->s, c->s->nscratch + 1) < 0) {
		c->err = -ENOMEM;
		return 1;
	}
	e = &c->s->scratch[c->s->nscratch++];
	e->ksub_id = k->id;
	e->start = k->start > c->start ? k->start : c->start;
	e->end = k->end < c->end ? k->end : c->end;
	return 0;
}

/* Fill s->scratch with the open ksubs of @t overlapping [start, end). */
static int collect(struct target *t, uint64_t start, uint64_t end)
{
	struct collect c = {t->s, start, end, 0};

	t->s->nscratch = 0;
	if (start >= end || !t->index.root)
		return 0;
	mmn__itree_query(&t->index, start, end - 1, collect_one, &c);
	return c.err;
}

/*
 * Emit INVALIDATE and its INVALIDATE_END for the ksubs in s->scratch.  The
 * END lists only those still alive: a ksub the broker deleted from inside the
 * INVALIDATE callback is its own business and no longer exists.
 */
static void emit_invalidation(struct target *t, uint32_t event, uint64_t start, uint64_t end)
{
	struct uffd_source *s = t->s;
	struct source_event ev = {
		.kind = SOURCE_INVALIDATE,
		.event_id = ++s->next_event,
		.event = event,
		.blockable = true,
		.needs_ack = false,
		.range_start = start,
		.range_end = end,
		.pid = t->pid,
		.nsubs = s->nscratch,
		.subs = s->scratch,
	};
	size_t i, n = 0;

	if (!s->nscratch || !s->src.emit)
		return;
	s->src.emit(&ev, s->src.userdata);
	for (i = 0; i < s->nscratch; i++) {
		struct ksub *k = ksub_find(s, s->scratch[i].ksub_id);

		if (k && !k->closed)
			s->scratch[n++] = s->scratch[i];
	}
	ev.kind = SOURCE_INVALIDATE_END;
	ev.nsubs = n;
	s->src.emit(&ev, s->src.userdata);
	s->nscratch = 0;
}

/* ---- deferred closing of ksubs (REVOKED / RELEASE) ---- */

static void defer_close(struct target *t, enum close_reason why);

/* One event per ksub, nsubs == 1, like the module's per-subscription SUB_GONE. */
static void close_ksubs(struct target *t, enum close_reason why)
{
	struct uffd_source *s = t->s;
	size_t i;

	/* Snapshot first: the broker's ksub_del from the callback edits s->byid. */
	s->nscratch = 0;
	for (i = 0; i < s->nbyid; i++) {
		struct ksub *k = s->byid[i];

		if (k->t != t || k->closed)
			continue;
		if (scratch_reserve(s, s->nscratch + 1) < 0) {
			defer_close(t, why); /* out of memory: the rest on the next pass */
			break;
		}
		s->scratch[s->nscratch++] = (struct source_event_sub){k->id, k->start, k->end};
	}
	t->busy++;
	for (i = 0; i < s->nscratch; i++) {
		struct source_event_sub sub = s->scratch[i];
		struct ksub *k = ksub_find(s, sub.ksub_id);
		struct source_event ev = {
			.kind = why == CLOSE_RELEASE ? SOURCE_RELEASE : SOURCE_REVOKED,
			.pid = t->pid,
			.reason = why == CLOSE_RELEASE ? 0 : REVOKE_SOURCE_GONE,
			.range_start = sub.start,
			.range_end = sub.end,
			.nsubs = 1,
			.subs = &sub,
		};

		if (!k || k->closed)
			continue;
		k->closed = true;
		if (s->src.emit)
			s->src.emit(&ev, s->src.userdata);
	}
	s->nscratch = 0;
	t->busy--;
}

/* True when the process behind @t's pidfd has exited (pidfds poll readable then). */
static bool target_exited(struct target *t)
{
	struct pollfd p = {.fd = t->pidfd ? t->pidfd->fd : -1, .events = POLLIN};

	return p.fd >= 0 && poll(&p, 1, 0) == 1;
}

static void defer_cb(uv_idle_t *h)
{
	struct uffd_source *s = h->data;
	struct target *t, *next;

	uv_idle_stop(h);
	for (t = s->targets; t; t = next) {
		enum close_reason why = t->pending;

		t->busy++; /* keeps t, and so t->next, in the list */
		if (why != CLOSE_NONE) {
			t->pending = CLOSE_NONE;
			if (why == CLOSE_REVOKED && target_exited(t))
				why = CLOSE_RELEASE;
			watch_close(&t->pidfd);
			close_ksubs(t, why);
		}
		next = t->next;
		t->busy--;
		target_maybe_free(t);
	}
}

static void defer_close(struct target *t, enum close_reason why)
{
	if (t->pending == CLOSE_NONE || why == CLOSE_RELEASE)
		t->pending = why;
	uv_idle_start(&t->s->defer, defer_cb);
}

/* ---- reading the uffd ---- */

static void log_fault(struct uffd_source *s, struct target *t, const struct uffd_msg *m)
{
	if (mmn__ratelimit_ok(&s->log_rl, uv_now(s->src.loop)))
		mmn__log(LOG_WARNING, NULL,
			 "uffd source: unexpected page fault at 0x%llx (flags 0x%llx) in pid %d, resolved; "
			 "the client write-protected it or registered a faulting mode",
			 (unsigned long long)m->arg.pagefault.address,
			 (unsigned long long)m->arg.pagefault.flags, (int)t->pid);
}

/*
 * A page fault means the client registered a mode that faults (or
 * write-protected a page itself).  Never leave the faulting thread asleep:
 * clear the write protection of that page (which wakes it), else wake it so
 * it retries; a missing-page fault on a range registered MODE_MISSING gets a
 * zero page.
 */
static void resolve_fault(struct uffd_source *s, struct target *t, int fd, const struct uffd_msg *m)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct uffdio_range range = {.start = m->arg.pagefault.address & ~(page - 1), .len = page};

	s->faults++;
	log_fault(s, t, m);
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
		struct uffdio_writeprotect wp = {.range = range, .mode = 0};

		if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return;
	} else if (!(m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)) {
		struct uffdio_zeropage zp = {.range = range, .mode = 0};

		if (ioctl(fd, UFFDIO_ZEROPAGE, &zp) == 0)
			return;
	}
	(void)ioctl(fd, UFFDIO_WAKE, &range);
}

/* The whole span of @t's open ksubs, for events without a range (fork). */
static void whole_span(struct target *t, uint64_t *start, uint64_t *end)
{
	struct uffd_source *s = t->s;
	size_t i;

	*start = UINT64_MAX;
	*end = 0;
	for (i = 0; i < s->nscratch; i++) {
		if (s->scratch[i].start < *start)
			*start = s->scratch[i].start;
		if (s->scratch[i].end > *end)
			*end = s->scratch[i].end;
	}
}

static void handle_msg(struct uffd_source *s, struct target *t, int fd, const struct uffd_msg *m)
{
	uint64_t start, end;

	switch (m->event) {
	case UFFD_EVENT_UNMAP:
	case UFFD_EVENT_REMOVE:
		start = m->arg.remove.start;
		end = m->arg.remove.end;
		if (collect(t, start, end) == 0)
			emit_invalidation(t, m->event == UFFD_EVENT_UNMAP ? EV_UNMAP : EV_REMOVE, start, end);
		break;
	case UFFD_EVENT_REMAP:
		start = m->arg.remap.from;
		end = start + m->arg.remap.len;
		if (end < start)
			end = UINT64_MAX;
		if (collect(t, start, end) == 0)
			emit_invalidation(t, EV_REMAP, start, end);
		break;
	case UFFD_EVENT_FORK:
		/* Installed in our fd table by the read; not watched (children are not clients). */
		close((int)m->arg.fork.ufd);
		if (collect(t, 0, UINT64_MAX) == 0 && s->nscratch) {
			whole_span(t, &start, &end);
			emit_invalidation(t, EV_PROTECTION_PAGE, start, end);
		}
		break;
	case UFFD_EVENT_PAGEFAULT:
		resolve_fault(s, t, fd, m);
		break;
	default:
		break; /* an event a newer kernel added and nobody enabled */
	}
}

/*
 * read(2) on a uffd installs an fd for every FORK message; under EMFILE it
 * fails and leaves the message queued, and the forking client would sleep
 * until mmnd can read it.  Give the read the reserve fd's slot.
 */
static ssize_t read_msgs(struct uffd_source *s, int fd, struct uffd_msg *msgs, size_t n)
{
	ssize_t r = read(fd, msgs, n * sizeof(*msgs));

	if (r < 0 && (errno == EMFILE || errno == ENFILE) && s->reserve_fd >= 0) {
		close(s->reserve_fd);
		s->reserve_fd = -1;
		r = read(fd, msgs, sizeof(*msgs)); /* one message: at most one new fd */
	}
	return r;
}

static void uffd_cb(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct target *t = w->t;
	struct uffd_source *s;
	struct uffd_msg msgs[UFFD_BATCH];
	int batch;

	if (!t)
		return;
	s = t->s;
	t->busy++;
	for (batch = 0; status == 0 && batch < MAX_BATCHES && w->t == t; batch++) {
		ssize_t r = read_msgs(s, w->fd, msgs, UFFD_BATCH);
		size_t i, n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			break;
		if (r < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM))
			break; /* transient: the message stays queued, the fd stays readable */
		if (r <= 0) {
			status = r < 0 ? -errno : -EIO;
			break;
		}
		n = (size_t)r / sizeof(msgs[0]);
		for (i = 0; i < n; i++) {
			/* Closed from inside the broker's callback: later FORK fds still need closing. */
			if (w->t != t && msgs[i].event != UFFD_EVENT_FORK)
				continue;
			if (w->t != t)
				close((int)msgs[i].arg.fork.ufd);
			else
				handle_msg(s, t, w->fd, &msgs[i]);
		}
		/* The FORK fds are closed by now: take the reserve slot back. */
		if (s->reserve_fd < 0)
			s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (n < UFFD_BATCH)
			break;
	}
	if (status < 0 && w->t == t) {
		/* POLLERR (never initialised) or a read error: nothing more will come from it. */
		if (mmn__ratelimit_ok(&s->log_rl, uv_now(s->src.loop)))
			mmn__log(LOG_WARNING, NULL, "uffd source: a userfaultfd of pid %d failed: %s",
				 (int)t->pid, strerror(-status));
		uffds_close_watch(t, w);
		if (!t->nuffds) {
			t->dead = true;
			defer_close(t, CLOSE_REVOKED);
		}
	}
	t->busy--;
	target_maybe_free(t);
}

/* The target process exited: its ksubs are released, its uffd will never speak again. */
static void pidfd_cb(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct target *t = w->t;

	if (!t)
		return;
	if (status < 0) {
		watch_close(&t->pidfd); /* cannot tell: the uffds keep working, exit goes unnoticed */
		return;
	}
	t->busy++;
	/* Events queued before the exit (a SIGKILLed munmap drops its own) are still reported. */
	for (size_t i = t->nuffds; i-- > 0;)
		if (i < t->nuffds)
			uffd_cb(&t->uffds[i]->poll, 0, UV_READABLE);
	t->dead = true;
	watch_close(&t->pidfd);
	uffds_close_all(t);
	close_ksubs(t, CLOSE_RELEASE);
	t->busy--;
	target_maybe_free(t);
}

/* ---- ops ---- */

static void target_unlink(struct target *t);

static int uffd_start(struct source *src)
{
	return 0;
}

static int uffd_ksub_add(struct source *src, const struct source_target *st, uint64_t start, uint64_t length,
			 bool blocking, uint32_t timeout_ms, uint32_t *ksub_id)
{
	struct uffd_source *s = to_uffd(src);
	struct target *t;
	struct ksub *k;
	size_t i;

	if (!st || !ksub_id)
		return -EINVAL;
	if (length == 0 || start > USER_ADDR_LIMIT || length > USER_ADDR_LIMIT - start)
		return -EINVAL;
	t = target_find(s, st->pid);
	if (!t)
		return -EOPNOTSUPP; /* only processes that attached their uffd can be watched */
	if (t->dead)
		return -ESRCH; /* attached, but exited or its uffds failed */
	if (t->nksubs >= MAX_KSUBS_PER_TARGET)
		return -ENOSPC;
	if (s->nbyid == s->capbyid) {
		size_t cap = s->capbyid ? s->capbyid * 2 : 64;
		struct ksub **p = realloc(s->byid, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->byid = p;
		s->capbyid = cap;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->id = ksub_new_id(s);
	k->start = start;
	k->end = start + length;
	k->t = t;
	k->blocking = blocking;
	k->node.start = start;
	k->node.last = k->end - 1;
	mmn__itree_insert(&t->index, &k->node);
	t->nksubs++;
	i = byid_lower(s, k->id);
	memmove(&s->byid[i + 1], &s->byid[i], (s->nbyid - i) * sizeof(s->byid[0]));
	s->byid[i] = k;
	s->nbyid++;
	*ksub_id = k->id;
	return 0;
}

static int uffd_ksub_del(struct source *src, uint32_t id)
{
	struct uffd_source *s = to_uffd(src);
	size_t i = byid_lower(s, id);
	struct ksub *k;
	struct target *t;

	if (i >= s->nbyid || s->byid[i]->id != id)
		return -ENOENT;
	k = s->byid[i];
	t = k->t;
	memmove(&s->byid[i], &s->byid[i + 1], (s->nbyid - i - 1) * sizeof(s->byid[0]));
	s->nbyid--;
	mmn__itree_remove(&t->index, &k->node);
	t->nksubs--;
	free(k);
	target_maybe_free(t);
	return 0;
}

static int uffd_ksub_set_blocking(struct source *src, uint32_t id, bool blocking)
{
	struct ksub *k = ksub_find(to_uffd(src), id);

	if (!k)
		return -ENOENT;
	k->blocking = blocking;
	return 0;
}

static int uffd_ksub_resynced(struct source *src, uint32_t id)
{
	/* Events are never lost silently here: a failed uffd revokes instead. */
	return ksub_find(to_uffd(src), id) ? 0 : -ENOENT;
}

static int uffd_ack(struct source *src, uint64_t event_id)
{
	return -ENOENT; /* nobody ever waits: see the top of this file */
}

/* The features the client enabled, from /proc/self/fdinfo/FD ("API:\t<api>:<features>:<ioctls>"). */
static int uffd_features(int fd, uint64_t *features)
{
	char path[64], line[256];
	bool is_uffd = false, found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	{
		ssize_t n = readlink(path, line, sizeof(line) - 1);

		if (n < 0)
			return -errno;
		line[n] = '\0';
		is_uffd = strcmp(line, "anon_inode:[userfaultfd]") == 0;
	}
	if (!is_uffd)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long api, feat;

		if (sscanf(line, "API:\t%llx:%llx:", &api, &feat) == 2) {
			*features = feat;
			found = true;
			break;
		}
	}
	fclose(f);
	return found ? 0 : -EINVAL;
}

/* A linked target for @st->pid, watching its pidfd (exit -> SOURCE_RELEASE). */
static int target_new(struct uffd_source *s, const struct source_target *st, struct target **out)
{
	struct target *t = calloc(1, sizeof(*t));
	int r, pidfd;

	if (!t)
		return -ENOMEM;
	t->s = s;
	t->pid = st->pid;
	if (st->pidfd >= 0) {
		pidfd = fcntl(st->pidfd, F_DUPFD_CLOEXEC, 3);
		if (pidfd < 0) {
			r = -errno;
			free(t);
			return r;
		}
		r = watch_open(s, t, pidfd, pidfd_cb, &t->pidfd);
		if (r < 0) {
			close(pidfd);
			free(t);
			return r;
		}
	}
	t->linked = true;
	t->next = s->targets;
	if (s->targets)
		s->targets->prev = t;
	s->targets = t;
	*out = t;
	return 0;
}

/*
 * Takes ownership of @fd in every case (closed on error).  -EINVAL: not a
 * userfaultfd, or UFFDIO_API was not done with UNMAP, REMOVE and REMAP
 * events.  Each connection of a process may attach its own uffd.
 */
static int uffd_attach(struct source *src, const struct source_target *st, int fd)
{
	struct uffd_source *s = to_uffd(src);
	uint64_t features = 0;
	struct target *t = NULL;
	struct watch *w = NULL;
	int r, fl;

	if (!st || fd < 0 || st->pid <= 0) {
		r = -EINVAL;
		goto err;
	}
	r = uffd_features(fd, &features);
	if (r < 0)
		goto err;
	if ((features & UFFD_MASK_REQUIRED) != UFFD_MASK_REQUIRED) {
		r = -EINVAL;
		goto err;
	}
	t = target_find(s, st->pid);
	if (t && t->dead) {
		/* That process exited (or its uffds failed) and was not detached yet: start over. */
		t->attached = 0;
		target_unlink(t);
	}
	/* O_NONBLOCK is a file flag: it makes userfaultfd_read() return -EAGAIN. */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		r = -errno;
		goto err;
	}
	t = target_find(s, st->pid);
	if (!t) {
		r = target_new(s, st, &t);
		if (r < 0)
			goto err;
	}
	r = watch_open(s, t, fd, uffd_cb, &w);
	if (r < 0)
		goto err_target;
	fd = -1;
	w->conn = st->conn;
	r = uffds_add(t, w);
	if (r < 0)
		goto err_watch;
	t->attached++;
	t->fork_events |= !!(features & UFFD_FEATURE_EVENT_FORK);
	return 0;

err_watch:
	watch_close(&w);
err_target:
	if (!t->attached) {
		t->linked = false; /* created for this call */
		target_maybe_free(t);
	}
err:
	if (fd >= 0)
		close(fd);
	return r;
}

/*
 * The last connection of @t's process is gone (or the process died and a new
 * connection starts over): every uffd of the process is closed (the kernel
 * unregisters its ranges and wakes any thread still waiting for an event to
 * be read), and ksubs the broker still keeps can no longer be reported: they
 * are closed with REVOKED{source gone}, or RELEASE when the process exited,
 * from the next loop iteration rather than from inside the broker's call.
 */
static void target_unlink(struct target *t)
{
	t->linked = false;
	uffds_close_all(t);
	if (t->nksubs && !t->dead)
		defer_close(t, CLOSE_REVOKED);
	else
		watch_close(&t->pidfd);
	target_maybe_free(t);
}

/*
 * Connection @conn of process @pid is gone: close its uffd.  mmnd holds the
 * only descriptor of it, so this releases the registrations made for that
 * connection, and a process blocked on one of its events (munmap, madvise,
 * fork) goes on.
 */
static void uffd_detach(struct source *src, pid_t pid, uint64_t conn)
{
	struct uffd_source *s = to_uffd(src);
	struct target *t = target_find(s, pid);

	if (!t)
		return;
	for (size_t i = t->nuffds; i-- > 0;)
		if (t->uffds[i]->conn == conn)
			uffds_close(t, i); /* moves the last, already examined, into i */
	if (t->attached)
		t->attached--;
	if (!t->attached)
		target_unlink(t);
}

/* ---- registration (UFFDIO_REGISTER on behalf of the client) ---- */

/*
 * UFFDIO_REGISTER and UFFDIO_UNREGISTER act on the address space the uffd
 * was created in (ctx->mm), not on the caller's: fs/userfaultfd.c's
 * userfaultfd_register() and userfaultfd_unregister() start with
 * "struct mm_struct *mm = ctx->mm;" and take that mm's mmap lock.  So mmnd
 * registers the client's ranges with the client's uffd without any
 * privilege over the client, and the client need not keep a descriptor of
 * it.  That gives a client nothing it could not do itself: whoever holds a
 * uffd may register in its mm.  Every wait of the client for an event to be
 * read happens after it dropped its mmap lock, so taking that lock here
 * cannot deadlock with it (it blocks the loop while the client holds it).
 * Write-protect mode, never write-protected: events only, no page fault is
 * ever delivered.
 */
static int range_ioctl(int fd, bool reg, uint64_t a, uint64_t b)
{
	struct uffdio_register r = {.range = {.start = a, .len = b - a}, .mode = UFFDIO_REGISTER_MODE_WP};

	if (reg)
		return ioctl(fd, UFFDIO_REGISTER, &r) < 0 ? -errno : 0;
	return ioctl(fd, UFFDIO_UNREGISTER, &r.range) < 0 ? -errno : 0;
}

/* Is @r what a VMA that is not ours to watch (or a hole) answers? */
static bool foreign(int r)
{
	return r == -EPERM || r == -EBUSY || r == -EINVAL || r == -ENOMEM;
}

/*
 * Where the client's /proc/PID/maps cannot be read (mmnd without
 * CAP_SYS_PTRACE over it): halve [a, b) until the parts either work or are
 * one page, which is skipped.  A hole fails like a foreign VMA (-EINVAL) and
 * costs about two ioctls per page of it; -ENOMEM (nothing mapped at or after
 * @a, or the process exited) ends a part at once.  Each ioctl uses one unit
 * of *@budget: 0, or -E2BIG when the budget ran out first, or an unexpected
 * error.
 */
static int range_ioctl_bisect(int fd, bool reg, uint64_t a, uint64_t b, uint64_t page, unsigned *budget)
{
	uint64_t mid;
	int r;

	if (!*budget)
		return -E2BIG;
	(*budget)--;
	r = range_ioctl(fd, reg, a, b);
	if (r == 0 || r == -ENOMEM)
		return 0;
	if (!foreign(r))
		return r;
	if (b - a <= page)
		return 0;
	mid = a + (b - a) / page / 2 * page;
	r = range_ioctl_bisect(fd, reg, a, mid, page, budget);
	return r < 0 ? r : range_ioctl_bisect(fd, reg, mid, b, page, budget);
}

static uint64_t parse_hex(const char **p)
{
	uint64_t v = 0;

	for (;; (*p)++) {
		char ch = **p;

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uint64_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = v << 4 | (uint64_t)(ch - 'a' + 10);
		else
			return v;
	}
}

/*
 * The ioctl over [a, b) one VMA at a time, from /proc/@pid/maps, skipping
 * the VMAs it fails on (also those that changed between the read and the
 * ioctl).  The maps only guide the cuts: the ioctls act on the uffd's own mm
 * whatever process the pid names by then.  Returns 0, or the error of
 * opening the maps (-EACCES without the right to read them).
 */
static int range_ioctl_by_maps(int fd, pid_t pid, bool reg, uint64_t a, uint64_t b)
{
	char buf[4096], path[32];
	size_t len = 0;
	bool eof = false, skip = false; /* skip: the rest of a line longer than buf */
	int mfd, r = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	mfd = open(path, O_RDONLY | O_CLOEXEC);
	if (mfd < 0)
		return -errno;
	while (r == 0) {
		char *nl = memchr(buf, '\n', len);
		const char *p = buf;
		uint64_t vs, ve;

		if (!nl && len < sizeof(buf)) {
			ssize_t n;

			if (eof)
				break;
			n = read(mfd, buf + len, sizeof(buf) - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				eof = true;
			else
				len += (size_t)n;
			continue;
		}
		/* A line, or the start of one longer than buf (a path of nearly PATH_MAX). */
		vs = parse_hex(&p);
		ve = *p == '-' ? (p++, parse_hex(&p)) : 0;
		if (nl) {
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		} else {
			len = 0;
		}
		if (skip) {
			skip = !nl;
			continue;
		}
		skip = !nl;
		if (vs >= b)
			break; /* sorted by address */
		if (ve <= a || vs >= ve)
			continue;
		r = range_ioctl(fd, reg, vs > a ? vs : a, ve < b ? ve : b);
		if (foreign(r))
			r = 0;
	}
	close(mfd);
	return r;
}

bool mmn__source_uffd_no_maps;

/*
 * The ioctl over every part of [a, b) it works on.  The kernel checks every
 * VMA of a range before it changes any, so one VMA that cannot be
 * (un)registered fails the whole range: after munmap() the holes of a
 * subscription get reused by other mappings, such as another mmn_client's
 * read-only sequence page (-EPERM: no VM_MAYWRITE), a buffer registered with
 * another connection's uffd (-EBUSY), a file mapping (-EINVAL).  Those are
 * not ours to watch: skipped, VMA by VMA where mmnd may read the client's
 * maps, by bisection otherwise (bounded by *@budget).  Where
 * UFFDIO_UNREGISTER does not check whose a VMA is (Linux 6.1 does not),
 * unregistering a hole that another connection's registration took over
 * releases that one too: such kernels offer no way to tell them apart.
 */
static int range_ioctl_lenient(int fd, pid_t pid, bool reg, uint64_t a, uint64_t b, unsigned *budget)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	int r = range_ioctl(fd, reg, a, b);

	if (r == 0 || r == -ENOMEM || !foreign(r))
		return r == -ENOMEM ? 0 : r;
	if (!mmn__source_uffd_no_maps && range_ioctl_by_maps(fd, pid, reg, a, b) == 0)
		return 0;
	return range_ioctl_bisect(fd, reg, a, b, page, budget);
}

/*
 * Bounds on the ioctls of one bisection (a few microseconds each, on mmnd's
 * loop): a re-subscription needing more fails (-E2BIG) rather than leave
 * parts unwatched; an unregistration leaves the rest registered until the
 * connection closes (its events are read and match no ksub).
 */
#define REGISTER_BUDGET	  (1U << 14)
#define UNREGISTER_BUDGET 256U

static struct watch *conn_watch(struct uffd_source *s, pid_t pid, uint64_t conn)
{
	struct target *t = target_find(s, pid);

	for (size_t i = 0; t && i < t->nuffds; i++)
		if (t->uffds[i]->conn == conn)
			return t->uffds[i];
	return NULL;
}

static int page_round(uint64_t *start, uint64_t *end)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (*start >= *end || *end > USER_ADDR_LIMIT)
		return -EINVAL;
	*start &= ~(page - 1);
	*end = (*end + page - 1) & ~(page - 1);
	return 0;
}

static void uffd_unregister(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end);

static int uffd_register(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end,
			 bool strict)
{
	struct watch *w = conn_watch(to_uffd(src), pid, conn);
	unsigned budget = REGISTER_BUDGET;
	int r;

	if (!w)
		return -ENOTCONN;
	r = page_round(&start, &end);
	if (r < 0)
		return r;
	if (w->nregs == w->capregs) {
		size_t cap = w->capregs ? w->capregs * 2 : 8;
		struct reg *p = realloc(w->regs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		w->regs = p;
		w->capregs = cap;
	}
	if (strict)
		r = range_ioctl(w->fd, true, start, end);
	else
		r = range_ioctl_lenient(w->fd, pid, true, start, end, &budget);
	if (r < 0 && strict)
		return r; /* the kernel changed nothing: undoing could touch another uffd's (-EBUSY) */
	w->regs[w->nregs++] = (struct reg){start, end};
	if (r < 0) /* undo what the lenient pass did before it gave up */
		uffd_unregister(src, pid, conn, start, end);
	return r;
}

/*
 * Unregister [a, b) of @w except where a registration of @w from index
 * @from on covers it; those before @from are known not to overlap [a, b).
 * Best effort: what fails stays registered until the connection closes (its
 * events are read and match no ksub).
 */
static void unregister_uncovered(struct watch *w, pid_t pid, uint64_t a, uint64_t b, size_t from,
				 unsigned *budget)
{
	for (size_t i = from; i < w->nregs; i++) {
		const struct reg *o = &w->regs[i];

		if (o->end <= a || o->start >= b)
			continue;
		if (o->start > a)
			unregister_uncovered(w, pid, a, o->start, i + 1, budget);
		if (o->end < b)
			unregister_uncovered(w, pid, o->end, b, i + 1, budget);
		return;
	}
	range_ioctl_lenient(w->fd, pid, false, a, b, budget);
}

static void uffd_unregister(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end)
{
	struct watch *w = conn_watch(to_uffd(src), pid, conn);
	unsigned budget = UNREGISTER_BUDGET;

	if (!w || page_round(&start, &end) < 0)
		return;
	for (size_t i = 0; i < w->nregs; i++) {
		if (w->regs[i].start == start && w->regs[i].end == end) {
			w->regs[i] = w->regs[--w->nregs];
			unregister_uncovered(w, pid, start, end, 0, &budget);
			return;
		}
	}
}

static void source_free_cb(uv_handle_t *h)
{
	struct uffd_source *s = h->data;

	free(s);
}

static void uffd_destroy(struct source *src)
{
	struct uffd_source *s = to_uffd(src);
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->nbyid; i++)
		free(s->byid[i]);
	free(s->byid);
	free(s->scratch);
	while (s->targets) {
		struct target *t = s->targets;

		s->targets = t->next;
		uffds_close_all(t);
		free(t->uffds);
		watch_close(&t->pidfd);
		free(t);
	}
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	uv_close((uv_handle_t *)&s->defer, source_free_cb);
}

static const struct source_ops uffd_ops = {
	.start = uffd_start,
	.ksub_add = uffd_ksub_add,
	.ksub_del = uffd_ksub_del,
	.ksub_set_blocking = uffd_ksub_set_blocking,
	.ksub_resynced = uffd_ksub_resynced,
	.ack = uffd_ack,
	.attach_uffd = uffd_attach,
	.detach_uffd = uffd_detach,
	.uffd_register = uffd_register,
	.uffd_unregister = uffd_unregister,
	.destroy = uffd_destroy,
};

int mmn__source_uffd_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out)
{
	struct uffd_source *s;
	int r;

	/* @emit may be NULL here: mmnd's broker sets emit/userdata before ops->start(). */
	if (!loop || !out)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = uv_idle_init(loop, &s->defer);
	if (r < 0) {
		free(s);
		return r;
	}
	s->defer.data = s;
	s->src.ops = &uffd_ops;
	s->src.caps = (struct source_caps){
		.name = "uffd",
		.event_mask =
			1ULL << EV_UNMAP | 1ULL << EV_PROTECTION_PAGE | 1ULL << EV_REMOVE | 1ULL << EV_REMAP,
		.acks_hold_kernel = false,
		.events_before_change = false,
		.needs_uffd = true,
		.other_processes = false,
	};
	s->src.loop = loop;
	s->src.emit = emit;
	s->src.userdata = userdata;
	s->next_id = 1;
	s->log_rl = (struct ratelimit)RATELIMIT_INIT(10000, 5);
	s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = &s->src;
	return 0;
}
