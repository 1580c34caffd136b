// SPDX-License-Identifier: GPL-2.0-or-later
/* Kernel knobs in tests (see knob.h). */
#include "knob.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int knob_write(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -EIO;
}
