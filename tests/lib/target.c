// SPDX-License-Identifier: GPL-2.0-or-later
/* The target process of tests (see target.h). */
#include "target.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

int target_spawn(struct target *t, void (*body)(int cmd, int rep), uint64_t len)
{
	int cmd[2], rep[2];

	if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0)
		return -errno;
	fflush(stdout);
	t->pid = fork();
	if (t->pid < 0)
		return -errno;
	if (t->pid == 0) {
		close(cmd[1]);
		close(rep[0]);
		body(cmd[0], rep[1]);
		_exit(0);
	}
	close(cmd[0]);
	close(rep[1]);
	t->cmd = cmd[1];
	t->rep = rep[0];
	t->len = len;
	if (!fd_wait_readable(t->rep, 5000) || fd_read_full(t->rep, &t->addr, sizeof(t->addr)) < 0)
		return -EIO;
	return 0;
}

void target_end(struct target *t)
{
	close(t->cmd);
	close(t->rep);
	kill(t->pid, SIGKILL);
	waitpid(t->pid, NULL, 0);
}
