/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The client half of the uffd source, for tests that drive the source or
 * mmnd without libmmn: create a userfaultfd the way libmmn does and register
 * ranges in a mode that never faults.
 */
#ifndef MMN_TESTS_HOST_DAEMON_UFFD_CLIENT_H
#define MMN_TESTS_HOST_DAEMON_UFFD_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UFFD_CLIENT_EVENTS (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP)

/*
 * A userfaultfd with the UNMAP, REMOVE, REMAP and, when allowed
 * (CAP_SYS_PTRACE), FORK events.  UFFD_USER_MODE_ONLY: no privilege needed.
 * A failed UFFDIO_API leaves the fd unusable and zeroes .features, so the
 * fallback starts over with a new fd.  Returns the fd or a negative errno.
 */
static inline int uffd_client_open(uint64_t *features)
{
	const uint64_t want[] = {UFFD_CLIENT_EVENTS | UFFD_FEATURE_EVENT_FORK, UFFD_CLIENT_EVENTS};
	size_t i;
	int r = -EINVAL;

	for (i = 0; i < 2; i++) {
		struct uffdio_api api = {.api = UFFD_API, .features = want[i]};
		int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

		if (fd < 0)
			return -errno;
		if (ioctl(fd, UFFDIO_API, &api) == 0) {
			*features = want[i];
			return fd;
		}
		r = -errno;
		close(fd);
		if (r != -EPERM)
			break;
	}
	return r;
}

/* Watch [start, start + len) (private anonymous memory) for events, never for faults. */
static inline int uffd_client_register(int fd, uint64_t start, uint64_t len)
{
	struct uffdio_register reg = {.range = {.start = start, .len = len}, .mode = UFFDIO_REGISTER_MODE_WP};

	return ioctl(fd, UFFDIO_REGISTER, &reg) == 0 ? 0 : -errno;
}

#endif
