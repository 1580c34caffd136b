/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source's registrations: UFFDIO_REGISTER and UFFDIO_UNREGISTER of
 * the client's ranges with the connection's uffd, strict or lenient (VMA by
 * VMA from /proc/PID/maps, or by bisection).  What another subscription of
 * the connection still covers is the broker's to spare (engine/sub.c): it
 * holds the subscriptions in an interval index already.
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

#include "source/uffd-register.h"

#include "source/uffd-source.h"
#include "source/uffd-target.h"

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
	struct target *t = mmn__uffd_target_find(s, pid);

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

int mmn__uffd_register(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end,
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
	/*
	 * Strict: on failure the kernel changed nothing.  Lenient: what was
	 * registered before it gave up stays; the broker unregisters the part
	 * no other subscription covers.
	 */
	if (strict)
		return range_ioctl(w->fd, true, start, end);
	return range_ioctl_lenient(w->fd, pid, true, start, end, &budget);
}

void mmn__uffd_unregister(struct source *src, pid_t pid, uint64_t conn, uint64_t start, uint64_t end)
{
	struct watch *w = conn_watch(to_uffd(src), pid, conn);
	unsigned budget = UNREGISTER_BUDGET;

	/* Best effort: what fails stays registered until the connection closes (its events match no ksub). */
	if (w && page_round(&start, &end) == 0)
		range_ioctl_lenient(w->fd, pid, false, start, end, &budget);
}
