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
 * then on this source owns it.  For each subscription the broker has it
 * register the range (ops->uffd_register, before SubscribeReply; strictly for
 * a new subscription, leniently for a re-subscription after a restart) in
 * UFFDIO_REGISTER_MODE_WP without ever write-protecting anything (so no page
 * fault is ever delivered), and unregister it (ops->uffd_unregister) where
 * no other subscription of the connection covers it (uffd-register.c).
 * uffd-event.c polls the uffd on the loop and turns each uffd_msg into one
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
#include "source/source.h"
#include "source/uffd-event.h"
#include "source/uffd-ksub.h"
#include "source/uffd-register.h"
#include "source/uffd-source.h"
#include "source/uffd-target.h"
#include "source/uffd-watch.h"

/* ---- ops ---- */

static void target_unlink(struct target *t);

static int uffd_start(struct source *src)
{
	return 0;
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
		r = mmn__uffd_watch_open(s, t, pidfd, mmn__uffd_pidfd_cb, &t->pidfd);
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
	t = mmn__uffd_target_find(s, st->pid);
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
	t = mmn__uffd_target_find(s, st->pid);
	if (!t) {
		r = target_new(s, st, &t);
		if (r < 0)
			goto err;
	}
	r = mmn__uffd_watch_open(s, t, fd, mmn__uffd_uffd_cb, &w);
	if (r < 0)
		goto err_target;
	fd = -1;
	w->conn = st->conn;
	r = mmn__uffd_uffds_add(t, w);
	if (r < 0)
		goto err_watch;
	t->attached++;
	t->fork_events |= !!(features & UFFD_FEATURE_EVENT_FORK);
	return 0;

err_watch:
	mmn__uffd_watch_close(&w);
err_target:
	if (!t->attached) {
		t->linked = false; /* created for this call */
		mmn__uffd_target_maybe_free(t);
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
	mmn__uffd_uffds_close_all(t);
	if (t->nksubs && !t->dead)
		mmn__uffd_defer_close(t, CLOSE_REVOKED);
	else
		mmn__uffd_watch_close(&t->pidfd);
	mmn__uffd_target_maybe_free(t);
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
	struct target *t = mmn__uffd_target_find(s, pid);

	if (!t)
		return;
	for (size_t i = t->nuffds; i-- > 0;)
		if (t->uffds[i]->conn == conn)
			mmn__uffd_uffds_close(t, i); /* moves the last, already examined, into i */
	if (t->attached)
		t->attached--;
	if (!t->attached)
		target_unlink(t);
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
		mmn__uffd_uffds_close_all(t);
		free(t->uffds);
		mmn__uffd_watch_close(&t->pidfd);
		free(t);
	}
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	uv_close((uv_handle_t *)&s->defer, source_free_cb);
}

static const struct source_ops uffd_ops = {
	.start = uffd_start,
	.ksub_add = mmn__uffd_ksub_add,
	.ksub_del = mmn__uffd_ksub_del,
	.ksub_set_blocking = mmn__uffd_ksub_set_blocking,
	.ksub_resynced = mmn__uffd_ksub_resynced,
	.ack = uffd_ack,
	.attach_uffd = uffd_attach,
	.detach_uffd = uffd_detach,
	.uffd_register = mmn__uffd_register,
	.uffd_unregister = mmn__uffd_unregister,
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
		/* Bookkeeping only: the client's own uffd registrations decide what is seen. */
		.ksub_granule = UINT64_C(2) << 20,
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
