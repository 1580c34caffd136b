/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Process file descriptors: a handle on a process that a recycled pid
 * cannot alias.  No state.
 */
#include "engine/pidfd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * A pidfd for @pid.  Where pidfd_open is unknown (valgrind before 3.20
 * answers ENOSYS) a /proc/PID directory descriptor stands in: it pins the
 * pid for pidfd_send_signal() as well, though it cannot be polled.
 */
int mmn__pidfd_open(pid_t pid)
{
	char path[32];
	int fd;

	if (pid <= 0)
		return -ESRCH;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd >= 0)
		return fd;
	if (errno != ENOSYS)
		return errno == EINVAL ? -ESRCH : -errno;
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd >= 0 ? fd : errno == ENOENT ? -ESRCH : -errno;
}

/* The process @pidfd names has not exited (a zombie counts as alive: its pid is not reusable yet). */
bool mmn__pidfd_alive(int pidfd, pid_t pid)
{
	/* Signal 0 checks existence only: EPERM (a process of another uid, no CAP_KILL) is alive too. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 || errno == EPERM)
		return true;
	if (errno != ENOSYS)
		return false;
	return kill(pid, 0) == 0 || errno == EPERM;
}
