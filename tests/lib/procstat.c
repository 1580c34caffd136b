/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Resource figures of a process from /proc (see procstat.h). */
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int procstat_fds(pid_t pid)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

int procstat_self_fds(const bool *old, bool *seen, bool *all_cloexec)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	*all_cloexec = true;
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || fd >= 1024)
			continue;
		n++;
		if (seen)
			seen[fd] = true;
		if (old && !old[fd] && !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			*all_cloexec = false;
	}
	if (d)
		closedir(d);
	return n;
}

long procstat_status_kb(pid_t pid, const char *field)
{
	char path[64], line[128];
	long kb = -ENOENT;
	size_t n = strlen(field);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':' &&
		    sscanf(line + n + 1, "%ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

long procstat_rss_kb(pid_t pid)
{
	return procstat_status_kb(pid, "VmRSS");
}
