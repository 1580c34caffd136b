/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The userfaultfd of the uffd source.  mmnd cannot watch another process's
 * address space without the module, so the client creates a userfaultfd in
 * its own process (UFFD_USER_MODE_ONLY: no privilege needed), enables the
 * non-cooperative events (unmap, remove, remap, fork) and hands it to mmnd
 * (AttachUffd), once per connection.
 *
 * The client keeps no descriptor of it: it is closed right after the send.
 * A thread whose munmap, madvise or fork raised an event sleeps until a
 * reader reads it or the uffd is released (its last descriptor closed), so
 * if the client kept a copy and mmnd died, that thread would sleep forever,
 * and a single-threaded client would never get to reconnect.  With mmnd
 * holding the only descriptor, its death releases the uffd (the kernel
 * unregisters every range and wakes the sleepers), and the next connection
 * gets a new uffd.  mmnd registers the subscribed ranges itself: the
 * userfaultfd ioctls act on the address space the uffd was created in, not
 * on the caller's (the daemon's source/uffd-register.c says more).  One
 * userfaultfd per range: a second mmn_client of the same process subscribing
 * an overlapping range gets -EBUSY.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "client.h"
#include "error.h"
#include "uffd.h"

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

/*
 * A new uffd with the events enabled; returns it (the caller sends and
 * closes it) and sets c->uffd_features, or a negative errno.
 */
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
	return fd;
}

/*
 * A new subscription must be mapped as a whole: msync() fails with ENOMEM on
 * a hole, which UFFDIO_REGISTER (in mmnd) would skip silently.
 */
int mmn__uffd_check_mapped(uint64_t start, uint64_t end)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t a = start & ~(ps - 1), b = (end + ps - 1) & ~(ps - 1);

	if (msync((void *)(uintptr_t)a, b - a, MS_ASYNC) < 0)
		return errno == ENOMEM ? -ENOMEM : -errno;
	return 0;
}
