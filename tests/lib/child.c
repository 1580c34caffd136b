/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Child processes and bounded waits for tests (see child.h). */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t mono_ms(void)
{
	return mono_ns() / 1000000ull;
}

bool fd_wait_readable(int fd, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)(ms < 0 ? 0 : ms);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;

	for (;;) {
		uint64_t now = mono_ms();
		int left = ms < 0 ? -1 : (now >= end ? 0 : (int)(end - now));

		r = poll(&p, 1, left);
		if (r >= 0 || errno != EINTR)
			return r > 0;
	}
}

int fd_read_deadline(int fd, void *buf, size_t len, uint64_t deadline_ms)
{
	size_t got = 0;

	while (got < len) {
		uint64_t now = mono_ms();
		ssize_t n;

		if (now >= deadline_ms || !fd_wait_readable(fd, (int)(deadline_ms - now)))
			return -ETIMEDOUT;
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

int fd_wait_byte(int fd, char want, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;

	for (;;) {
		uint64_t now = mono_ms();
		char x;

		if (now >= end || !fd_wait_readable(fd, (int)(end - now) + 1))
			return -ETIMEDOUT;
		while (read(fd, &x, 1) == 1)
			if (x == want)
				return 0;
	}
}

int fd_read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

int fd_write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

/*
 * The parent's ends of the pipes of every live child, closed in each new
 * child: otherwise a later child would hold an earlier child's command pipe
 * open and that child would never see EOF.  Single-threaded use.
 */
static int parent_fds[64];
static unsigned nparent_fds;

static void fds_add(int fd)
{
	if (nparent_fds < sizeof(parent_fds) / sizeof(parent_fds[0]))
		parent_fds[nparent_fds++] = fd;
}

static void fds_del(int fd)
{
	for (unsigned i = 0; i < nparent_fds; i++)
		if (parent_fds[i] == fd) {
			parent_fds[i] = parent_fds[--nparent_fds];
			return;
		}
}

int child_spawn(struct child *c, int (*fn)(void *arg, int rep, int cmd), void *arg)
{
	int rep[2], cmd[2];

	if (pipe2(rep, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(cmd, O_CLOEXEC) < 0) {
		int e = -errno;

		close(rep[0]);
		close(rep[1]);
		return e;
	}
	fflush(stdout);
	fflush(stderr);
	c->pid = fork();
	if (c->pid < 0) {
		int e = -errno;

		close(rep[0]);
		close(rep[1]);
		close(cmd[0]);
		close(cmd[1]);
		return e;
	}
	if (c->pid == 0) {
		for (unsigned i = 0; i < nparent_fds; i++)
			close(parent_fds[i]);
		close(rep[0]);
		close(cmd[1]);
		_exit(fn(arg, rep[1], cmd[0]));
	}
	close(rep[1]);
	close(cmd[0]);
	c->rep = rep[0];
	c->cmd = cmd[1];
	fds_add(c->rep);
	fds_add(c->cmd);
	c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	return 0;
}

int child_wait(struct child *c, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;
	int pidfd = c->pidfd, st, ret;

	if (pidfd < 0)
		pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	if (pidfd < 0)
		return -errno; /* kernel < 5.3: no bounded wait without polling */
	for (;;) {
		pid_t r = waitpid(c->pid, &st, WNOHANG);
		uint64_t now = mono_ms();

		if (r == c->pid) {
			c->pid = 0;
			ret = st;
			break;
		}
		if (r < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (now >= end) {
			ret = -ETIMEDOUT;
			break;
		}
		fd_wait_readable(pidfd, (int)(end - now)); /* readable once the child exited */
	}
	if (pidfd != c->pidfd)
		close(pidfd);
	return ret;
}

void child_close_cmd(struct child *c)
{
	if (c->cmd >= 0) {
		fds_del(c->cmd);
		close(c->cmd);
		c->cmd = -1;
	}
}

void child_close(struct child *c)
{
	if (c->rep >= 0) {
		fds_del(c->rep);
		close(c->rep);
	}
	if (c->cmd >= 0) {
		fds_del(c->cmd);
		close(c->cmd);
	}
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->rep = c->cmd = c->pidfd = -1;
}

void child_kill(struct child *c)
{
	if (c->pid > 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
		c->pid = 0;
	}
	child_close(c);
}
