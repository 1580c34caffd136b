/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Process file descriptors: a handle on a process that a recycled pid
 * cannot alias.
 */
#ifndef MMN_DAEMON_PIDFD_H
#define MMN_DAEMON_PIDFD_H

#include <stdbool.h>
#include <sys/types.h>

/* A pidfd for @pid (or a stand-in, see target.c); negative errno (-ESRCH). */
int mmn__pidfd_open(pid_t pid);
bool mmn__pidfd_alive(int pidfd, pid_t pid);

#endif
