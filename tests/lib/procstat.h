/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Resource figures of a process from /proc, for leak checks in tests. */
#ifndef MMN_TESTS_PROCSTAT_H
#define MMN_TESTS_PROCSTAT_H

#include <sys/types.h>

/* Number of open descriptors of @pid (entries of /proc/PID/fd), or -errno. */
int procstat_fds(pid_t pid);

/* VmRSS of @pid in KiB, or -errno. */
long procstat_rss_kb(pid_t pid);

#endif
