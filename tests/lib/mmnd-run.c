/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Start, stop and kill mmnd for tests (see mmnd-run.h). */
#include "mmnd-run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

#define MAX_ARGS 32

int mmnd_run_init(struct mmnd_run *m, const char *exe)
{
	memset(m, 0, sizeof(*m));
	m->exe = exe;
	snprintf(m->dir, sizeof(m->dir), "/tmp/mmn-test-XXXXXX");
	if (!mkdtemp(m->dir))
		return -errno;
	snprintf(m->sock, sizeof(m->sock), "%s/mmnd.sock", m->dir);
	return 0;
}

static bool has_opt(const char *const *args, const char *prefix)
{
	for (; args && *args; args++)
		if (strncmp(*args, prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

/* In the child: fd 3 is the ready pipe, stdout goes to stderr. */
static void exec_mmnd(const struct mmnd_run *m, const char *const *extra, int ready)
{
	const char *argv[2 * MAX_ARGS + 8];
	char sockopt[160];
	int i = 0;

	if (m->log) {
		int lfd = open(m->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (lfd < 0 || dup2(lfd, 2) < 0)
			_exit(127);
	}
	if (dup2(ready, 3) < 0 || dup2(2, 1) < 0)
		_exit(127);
	snprintf(sockopt, sizeof(sockopt), "--socket=%s", m->sock);
	for (int k = 0; m->wrapper && m->wrapper[k] && k < MAX_ARGS; k++)
		argv[i++] = m->wrapper[k];
	argv[i++] = m->exe;
	argv[i++] = sockopt;
	if (!has_opt(extra, "--bus"))
		argv[i++] = "--bus=none";
	argv[i++] = "--ready-fd=3";
	argv[i++] = "--foreground";
	if (!has_opt(extra, "--source"))
		argv[i++] = "--source=uffd";
	if (!has_opt(extra, "--log-level"))
		argv[i++] = "--log-level=warning";
	for (int k = 0; extra && extra[k] && k < MAX_ARGS; k++)
		argv[i++] = extra[k];
	argv[i] = NULL;
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

int mmnd_run_start(struct mmnd_run *m, const char *const *extra_args, int timeout_ms)
{
	char buf[32] = {0};
	int p[2], r;
	size_t got = 0;

	if (m->pid > 0)
		return -EBUSY;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	fflush(stdout);
	fflush(stderr);
	m->pid = fork();
	if (m->pid < 0) {
		r = -errno;
		m->pid = 0;
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (m->pid == 0)
		exec_mmnd(m, extra_args, p[1]);
	close(p[1]);
	/* Read until the line is complete or EOF (mmnd exited). */
	r = 0;
	while (got < sizeof(buf) - 1 && !strchr(buf, '\n')) {
		ssize_t n;

		if (!fd_wait_readable(p[0], timeout_ms)) {
			r = -ETIMEDOUT;
			break;
		}
		n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = -EIO;
			break;
		}
		got += (size_t)n;
	}
	close(p[0]);
	if (r == 0 && strcmp(buf, "READY=1\n") != 0)
		r = -EIO;
	if (r < 0) {
		fprintf(stderr, "mmnd-run: %s did not get ready (%s; read '%s')\n", m->exe, strerror(-r),
			buf);
		kill(m->pid, SIGKILL);
		waitpid(m->pid, NULL, 0);
		m->pid = 0;
	}
	return r;
}

int mmnd_run_kill(struct mmnd_run *m, int sig, int timeout_ms)
{
	struct child c = {.pid = m->pid, .rep = -1, .cmd = -1, .pidfd = -1};
	int st;

	if (m->pid <= 0)
		return -ESRCH;
	kill(m->pid, sig);
	st = child_wait(&c, timeout_ms);
	if (st == -ETIMEDOUT) {
		kill(m->pid, SIGKILL);
		waitpid(m->pid, NULL, 0);
	}
	m->pid = 0;
	return st;
}

void mmnd_run_fini(struct mmnd_run *m)
{
	if (m->pid > 0)
		mmnd_run_kill(m, SIGKILL, 5000);
	if (m->sock[0])
		unlink(m->sock);
	if (m->dir[0])
		rmdir(m->dir);
}

bool mmnd_run_uffd_available(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

pid_t mmnd_run_at(const char *mmnd, const char *sock, const char *const *extra_args, int timeout_ms)
{
	struct mmnd_run m = {.exe = mmnd};
	int r = -ENAMETOOLONG;

	if (snprintf(m.sock, sizeof(m.sock), "%s", sock) < (int)sizeof(m.sock))
		r = mmnd_run_start(&m, extra_args, timeout_ms);
	if (r < 0) {
		printf("# mmnd did not get ready: %s\n", strerror(-r));
		fflush(stdout);
		return -1;
	}
	return m.pid;
}

pid_t mmnd_run_uffd(const char *mmnd, const char *sock)
{
	return mmnd_run_at(mmnd, sock, NULL, 20000);
}
