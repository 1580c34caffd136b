// SPDX-License-Identifier: GPL-2.0-or-later
/* The kernel log in tests (see klog.h). */
#include "klog.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

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
