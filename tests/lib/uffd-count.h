/* SPDX-License-Identifier: GPL-2.0-or-later */
/* How many descriptors of this process are userfaultfds (from /proc/self/fd), or -1. */
#ifndef MMN_TESTS_LIB_UFFD_COUNT_H
#define MMN_TESTS_LIB_UFFD_COUNT_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static inline int count_uffds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], target[64];
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		n += strcmp(target, "anon_inode:[userfaultfd]") == 0;
	}
	closedir(d);
	return n;
}

#endif
