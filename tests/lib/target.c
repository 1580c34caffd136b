// SPDX-License-Identifier: GPL-2.0-or-later
/* The target process of tests (see target.h). */
#include "target.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

/* In the child: only 0-2 and the pipes, as 100 (cmd) and 101 (rep). */
static void target_close_fds(int *cmd, int *rep)
{
	if (dup2(*cmd, 100) < 0 || dup2(*rep, 101) < 0)
		_exit(1);
	close_range(3, 99, 0);
	close_range(102, ~0U, 0);
	*cmd = 100;
	*rep = 101;
}

/* In the child: map, fill, report the address, obey. */
static void target_child(int cmd, int rep, size_t len, int flags,
			 void (*body)(int cmd, int rep, char *p, size_t len))
{
	int populate = flags & (TARGET_FILL | TARGET_POPULATE) ? MAP_POPULATE : 0;
	char *p = NULL;
	uint64_t a;

	if (flags & TARGET_CLOSE_FDS)
		target_close_fds(&cmd, &rep);
	if (!(flags & TARGET_NO_MAP)) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0);
		if (p == MAP_FAILED)
			_exit(2);
	}
	if (flags & TARGET_FILL)
		memset(p, 0x5a, len);
	a = (uint64_t)(uintptr_t)p;
	if (write(rep, &a, sizeof(a)) != sizeof(a))
		_exit(3);
	body(cmd, rep, p, len);
	_exit(0);
}

int target_spawn(struct target *t, uint64_t len, int flags,
		 void (*body)(int cmd, int rep, char *p, size_t len))
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
		target_child(cmd[0], rep[1], (size_t)len, flags, body);
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
