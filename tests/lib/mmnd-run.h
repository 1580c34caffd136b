/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Start a real mmnd for host tests: the userfaultfd source, no bus, on
 * @sock, and wait (blocking read, bounded by mmnd's own startup) for its
 * READY=1 on a pipe.  Returns its pid, or -1 (and a TAP diagnostic).
 */
#ifndef MMN_TESTS_LIB_MMND_RUN_H
#define MMN_TESTS_LIB_MMND_RUN_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "tap.h"

static inline pid_t mmnd_run_uffd(const char *mmnd, const char *sock)
{
	char arg_sock[160], buf[16] = {0};
	int p[2];
	pid_t pid;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	snprintf(arg_sock, sizeof(arg_sock), "--socket=%s", sock);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 3);
		execl(mmnd, mmnd, "--source=uffd", "--bus=none", arg_sock, "--ready-fd=3",
		      "--log-level=warning", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	if (n <= 0 || strcmp(buf, "READY=1\n") != 0) {
		tap_diag("mmnd did not get ready (read %zd: '%s')", n, buf);
		return -1;
	}
	return pid;
}

#endif
