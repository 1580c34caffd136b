/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Resource figures of a process from /proc, for leak checks in tests. */
#ifndef MMN_TESTS_PROCSTAT_H
#define MMN_TESTS_PROCSTAT_H

#include <stdbool.h>
#include <sys/types.h>

/* Number of open descriptors of @pid (entries of /proc/PID/fd), or -errno. */
int procstat_fds(pid_t pid);

/*
 * This process's open descriptors below 1024 (/proc/self/fd): how many, each
 * marked in @seen[1024] (NULL: not marked); *@all_cloexec is false when one
 * not in @old[1024] (NULL: none) lacks FD_CLOEXEC.
 */
int procstat_self_fds(const bool *old, bool *seen, bool *all_cloexec);

/* The "@field: N kB" line of /proc/PID/status (VmRSS, VmLck, RssShmem...), or -errno. */
long procstat_status_kb(pid_t pid, const char *field);

/* VmRSS of @pid in KiB, or -errno. */
long procstat_rss_kb(pid_t pid);

#endif
