/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source's events: reading a uffd (and a pidfd's exit) and turning
 * each uffd_msg into SOURCE_INVALIDATE + SOURCE_INVALIDATE_END for the ksubs
 * it overlaps; closing a target's ksubs with SOURCE_RELEASE or
 * SOURCE_REVOKED, deferred to an idle callback.  The mapping of uffd events
 * to mmn events and why nothing waits for an ack: uffd.c.
 *
 * Everything here runs on mmnd's loop thread; nothing is locked.
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

#include "source/uffd-event.h"

#include "engine/itree.h"
#include "log.h"
#include "source/uffd-ksub.h"
#include "source/uffd-source.h"
#include "source/uffd-target.h"
#include "source/uffd-watch.h"

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
		struct ksub *k = mmn__uffd_ksub_find(s, s->scratch[i].ksub_id);

		if (k && !k->closed)
			s->scratch[n++] = s->scratch[i];
	}
	ev.kind = SOURCE_INVALIDATE_END;
	ev.nsubs = n;
	s->src.emit(&ev, s->src.userdata);
	s->nscratch = 0;
}

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
			mmn__uffd_defer_close(t, why); /* out of memory: the rest on the next pass */
			break;
		}
		s->scratch[s->nscratch++] = (struct source_event_sub){k->id, k->start, k->end};
	}
	t->busy++;
	for (i = 0; i < s->nscratch; i++) {
		struct source_event_sub sub = s->scratch[i];
		struct ksub *k = mmn__uffd_ksub_find(s, sub.ksub_id);
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
			mmn__uffd_watch_close(&t->pidfd);
			close_ksubs(t, why);
		}
		next = t->next;
		t->busy--;
		mmn__uffd_target_maybe_free(t);
	}
}

void mmn__uffd_defer_close(struct target *t, enum close_reason why)
{
	if (t->pending == CLOSE_NONE || why == CLOSE_RELEASE)
		t->pending = why;
	uv_idle_start(&t->s->defer, defer_cb);
}

/* ---- reading the uffd ---- */

static void log_fault(struct uffd_source *s, struct target *t, const struct uffd_msg *m)
{
	if (mmn__ratelimit_ok(&s->log_rl, uv_now(s->src.loop)))
		mmn__log_fields(
			LOG_WARNING, NULL, &(struct log_fields){.has = LOG_F_TARGET, .target_pid = t->pid},
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

void mmn__uffd_uffd_cb(uv_poll_t *h, int status, int events)
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
			mmn__log_fields(LOG_WARNING, NULL,
					&(struct log_fields){.has = LOG_F_TARGET, .target_pid = t->pid},
					"uffd source: a userfaultfd of pid %d failed: %s", (int)t->pid,
					strerror(-status));
		mmn__uffd_uffds_close_watch(t, w);
		if (!t->nuffds) {
			t->dead = true;
			mmn__uffd_defer_close(t, CLOSE_REVOKED);
		}
	}
	t->busy--;
	mmn__uffd_target_maybe_free(t);
}

/* The target process exited: its ksubs are released, its uffd will never speak again. */
void mmn__uffd_pidfd_cb(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct target *t = w->t;

	if (!t)
		return;
	if (status < 0) {
		mmn__uffd_watch_close(&t->pidfd); /* cannot tell: the uffds keep working, exit goes unnoticed */
		return;
	}
	t->busy++;
	/* Events queued before the exit (a SIGKILLed munmap drops its own) are still reported. */
	for (size_t i = t->nuffds; i-- > 0;)
		if (i < t->nuffds)
			mmn__uffd_uffd_cb(&t->uffds[i]->poll, 0, UV_READABLE);
	t->dead = true;
	mmn__uffd_watch_close(&t->pidfd);
	mmn__uffd_uffds_close_all(t);
	close_ksubs(t, CLOSE_RELEASE);
	t->busy--;
	mmn__uffd_target_maybe_free(t);
}
