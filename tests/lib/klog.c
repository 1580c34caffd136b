// SPDX-License-Identifier: GPL-2.0-or-later
/* The kernel log in tests (see klog.h). */
#include "klog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "child.h"

int klog_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	lseek(fd, 0, SEEK_END);
	return fd;
}

int klog_new(int fd)
{
	char buf[8192];
	int n = 0;

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EPIPE)
			continue;
		if (r <= 0)
			break;
		printf("# klog: %.*s", (int)r, buf);
		n++;
	}
	return n;
}

bool klog_has(int fd, const char *needle)
{
	char buf[8192];
	bool found = false;

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf) - 1);

		if (r < 0 && errno == EPIPE)
			continue;
		if (r <= 0)
			break;
		buf[r] = 0;
		if (strstr(buf, needle))
			found = true;
	}
	return found;
}

bool klog_wait(int fd, const char *needle, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	for (;;) {
		int64_t left;

		if (klog_has(fd, needle))
			return true;
		left = (int64_t)(deadline - mono_ms());
		if (left <= 0)
			return false;
		fd_wait_readable(fd, left < 100 ? (int)left : 100); /* readable on a new record */
	}
}
