/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The userfaultfd of the uffd source.  mmnd cannot watch another process's
 * address space without the module, so the client creates a userfaultfd in
 * its own process (UFFD_USER_MODE_ONLY: no privilege needed), enables the
 * non-cooperative events (unmap, remove, remap, fork) and hands it to mmnd.
 * Ranges are registered in write-protect mode only and never write-protected,
 * so no page fault is ever delivered: only the events are.
 *
 * One userfaultfd per address space per range: a second mmn_client of the
 * same process registering an overlapping range gets -EBUSY.  Overlapping
 * subscriptions of one client share the registration; a range is unregistered
 * only where no other subscription of the client covers it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define UFFD_REQUIRED                                                                                        \
	(UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP |                   \
	 UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_PAGEFAULT_FLAG_WP)
/*
 * Optional: WP registration of shmem/hugetlb, and WP_ASYNC, which lets
 * WP-only registration cover any memory type (file mappings too) and makes
 * the kernel resolve any write-protect fault by itself.
 */
#define UFFD_OPTIONAL (UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_ASYNC)

static int uffd_create(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0 && errno == EINVAL) /* kernel before 5.11 */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

int mmn__uffd_open(struct mmn_client *c)
{
	struct uffdio_api api = {.api = UFFD_API};
	uint64_t avail;
	int fd, r;

	/* UFFDIO_API works once per fd: probe what the kernel offers on a first one. */
	fd = uffd_create();
	if (fd < 0)
		return fd == -ENOSYS || fd == -EPERM ? -EOPNOTSUPP : fd;
	r = ioctl(fd, UFFDIO_API, &api) < 0 ? -errno : 0;
	close(fd);
	if (r < 0)
		return r;
	avail = api.features;
	if ((avail & UFFD_REQUIRED) != UFFD_REQUIRED) {
		mmn__log(LOG_ERR, "mmn: userfaultfd lacks events (features 0x%llx)",
			 (unsigned long long)avail);
		return -EOPNOTSUPP;
	}
	/*
	 * EVENT_FORK needs CAP_SYS_PTRACE (EPERM otherwise): an unprivileged
	 * process goes on without fork events, on a new fd since a failed
	 * UFFDIO_API leaves the fd unusable.  mmn_capabilities() then lacks
	 * MMN_EVENT_PROTECTION_PAGE, the only event fork produces.
	 */
	uint64_t want = UFFD_REQUIRED | (avail & UFFD_OPTIONAL);

	for (;;) {
		fd = uffd_create();
		if (fd < 0)
			return fd;
		api = (struct uffdio_api){.api = UFFD_API, .features = want};
		if (ioctl(fd, UFFDIO_API, &api) == 0)
			break;
		r = -errno;
		close(fd);
		if (r != -EPERM || !(want & UFFD_FEATURE_EVENT_FORK))
			return r;
		want &= ~(uint64_t)UFFD_FEATURE_EVENT_FORK;
	}
	c->uffd_features = api.features;
	if (c->stash[0] < 0 &&
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, c->stash) < 0)
		c->stash[0] = c->stash[1] = -1; /* fork() then relies on mmnd alone */
	if (c->nullfd < 0)
		c->nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pthread_mutex_lock(&c->uffd_lock);
	c->uffd = fd;
	pthread_mutex_unlock(&c->uffd_lock);
	return 0;
}

static int send_fd(int sock, int fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control = {0};
	char byte = 'u';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

static int recv_fd(int sock)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cmsg;
	int fd = -1;

	if (sock < 0 || recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
	    cmsg->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

/*
 * fork prepare (uffd_lock held): take the uffd out of the descriptor table,
 * into the stash, or drop it when mmnd is gone (@drop).  /dev/null keeps its
 * number meanwhile, so nothing else can get that number.
 */
void mmn__uffd_stash(struct mmn_client *c, bool drop)
{
	if (c->nullfd < 0 || c->stashed)
		return;
	if (!drop && send_fd(c->stash[0], c->uffd) < 0)
		return; /* keep it: fork relies on mmnd reading the event */
	if (dup3(c->nullfd, c->uffd, O_CLOEXEC) < 0)
		return;
	c->stashed = !drop;
}

/* fork parent handler (uffd_lock held): put the uffd back, unless it was drained. */
void mmn__uffd_unstash(struct mmn_client *c)
{
	int fd;

	if (!c->stashed)
		return;
	c->stashed = false;
	fd = recv_fd(c->stash[1]);
	if (fd < 0)
		return; /* drained by mmn__uffd_close: the number holds /dev/null until closed */
	dup3(fd, c->uffd, O_CLOEXEC);
	close(fd);
}

/*
 * Closing releases every registration (the kernel unregisters all ranges).
 * The stash is drained first without uffd_lock: a fork() waiting for a dead
 * mmnd to read its event holds that lock, and only this releases it.
 */
void mmn__uffd_close(struct mmn_client *c)
{
	int fd;

	while ((fd = recv_fd(c->stash[1])) >= 0)
		close(fd);
	pthread_mutex_lock(&c->uffd_lock);
	if (c->uffd >= 0)
		close(c->uffd);
	c->uffd = -1;
	pthread_mutex_unlock(&c->uffd_lock);
	for (struct mmn_sub *s = c->subs; s; s = s->next)
		s->reg_start = s->reg_end = 0;
}

/* One ioctl over [a, b): UFFDIO_REGISTER (write-protect mode) or UFFDIO_UNREGISTER. */
static int range_ioctl(int uffd, bool reg, uint64_t a, uint64_t b)
{
	struct uffdio_register r = {.range = {.start = a, .len = b - a}, .mode = UFFDIO_REGISTER_MODE_WP};

	if (reg)
		return ioctl(uffd, UFFDIO_REGISTER, &r) < 0 ? -errno : 0;
	return ioctl(uffd, UFFDIO_UNREGISTER, &r.range) < 0 ? -errno : 0;
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
 * The ioctl over [a, b) one VMA at a time (from /proc/self/maps), skipping
 * the VMAs it fails on.  The kernel checks every VMA of a range before it
 * changes any, so one VMA that cannot be (un)registered fails the whole range:
 * after munmap() the holes of a subscription get reused by other mappings,
 * such as another mmn_client's read-only sequence page (-EPERM: no
 * VM_MAYWRITE), a buffer registered with that client's own uffd (-EBUSY) or
 * a file mapping (-EINVAL).  Those are not ours to watch: skip them, and a
 * VMA that changed between the read and the ioctl (-EINVAL, -ENOMEM) too.
 * No allocation: the dispatch thread may run this.  Returns 0, -ENOTTY (a
 * fork() is in flight) or the error of opening /proc/self/maps.
 */
static int range_ioctl_by_vma(int uffd, bool reg, uint64_t a, uint64_t b)
{
	char buf[4096];
	size_t len = 0;
	bool eof = false, skip = false; /* skip: the rest of a line longer than buf */
	int fd, r = 0;

	fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (r == 0) {
		char *nl = memchr(buf, '\n', len);
		const char *p = buf;
		uint64_t vs, ve;

		if (!nl && len < sizeof(buf)) {
			ssize_t n;

			if (eof)
				break;
			n = read(fd, buf + len, sizeof(buf) - len);
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
		r = range_ioctl(uffd, reg, vs > a ? vs : a, ve < b ? ve : b);
		if (r == -EPERM || r == -EBUSY || r == -EINVAL || r == -ENOMEM)
			r = 0;
	}
	close(fd);
	return r;
}

/*
 * @strict: the whole range must be mapped and registrable (a new
 * subscription).  Otherwise (re-registering after a reconnection) holes are
 * fine: what was unmapped meanwhile is simply not watched, and RESYNC tells
 * the caller; what other mappings took a hole's place meanwhile is skipped
 * when it cannot be registered (range_ioctl_by_vma).
 */
int mmn__uffd_register(struct mmn_client *c, struct mmn_sub *s, bool strict)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t a = s->start & ~(ps - 1), b = (s->end + ps - 1) & ~(ps - 1);
	int r;

	if (c->uffd < 0)
		return -ENOTCONN;
	/* msync() fails with ENOMEM on a hole; UFFDIO_REGISTER would skip it. */
	if (strict && msync((void *)(uintptr_t)a, b - a, MS_ASYNC) < 0)
		return errno == ENOMEM ? -ENOMEM : -errno;
	/*
	 * No uffd_lock: a fork() in flight may hold it while it waits for the
	 * dispatching thread, which may wait for c->lock, held here.  The
	 * number stays ours: during a fork /dev/null holds it (ENOTTY).
	 */
	r = range_ioctl(c->uffd, true, a, b);
	if (!strict && (r == -EPERM || r == -EBUSY || r == -EINVAL || r == -ENOMEM)) {
		int whole = r;

		r = range_ioctl_by_vma(c->uffd, true, a, b);
		if (r < 0 && r != -ENOTTY) {
			mmn__log(LOG_WARNING, "mmn: re-registering 0x%llx-0x%llx VMA by VMA: %s",
				 (unsigned long long)a, (unsigned long long)b, mmn_strerror(r));
			if (whole == -EINVAL || whole == -ENOMEM)
				r = 0; /* as before: taken as nothing of it mapped any more */
			else
				r = whole;
		}
	}
	if (r == -ENOTTY)
		return -EAGAIN; /* a fork() is in flight (or mmnd died during one): try again */
	if (r < 0)
		return r;
	s->reg_start = a;
	s->reg_end = b;
	return 0;
}

static void unregister(int uffd, uint64_t a, uint64_t b)
{
	/*
	 * -EINVAL: a VMA of the range is not ours (another uffd's, or one that
	 * cannot be registered): unregister the rest VMA by VMA.  Other
	 * failures only mean the range is gone already.
	 */
	if (a < b && range_ioctl(uffd, false, a, b) == -EINVAL)
		range_ioctl_by_vma(uffd, false, a, b);
}

/*
 * Unregister [a, b) except where another registered sub of @c covers it.
 * Subs before @from in the list are known not to overlap [a, b).
 */
static void unregister_uncovered(struct mmn_client *c, const struct mmn_sub *self, uint64_t a, uint64_t b,
				 const struct mmn_sub *from)
{
	for (const struct mmn_sub *o = from; o; o = o->next) {
		if (o == self || o->reg_start == o->reg_end || o->reg_end <= a || o->reg_start >= b)
			continue;
		if (o->reg_start > a)
			unregister_uncovered(c, self, a, o->reg_start, o->next);
		if (o->reg_end < b)
			unregister_uncovered(c, self, o->reg_end, b, o->next);
		return;
	}
	unregister(c->uffd, a, b);
}

void mmn__uffd_unregister(struct mmn_client *c, struct mmn_sub *s)
{
	/* No uffd_lock, see mmn__uffd_register(). */
	if (c->uffd >= 0 && s->reg_start < s->reg_end)
		unregister_uncovered(c, s, s->reg_start, s->reg_end, c->subs);
	s->reg_start = s->reg_end = 0;
}
