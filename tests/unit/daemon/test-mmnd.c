/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The mmnd binary: --ready-fd, --socket, --source=test, Hello over the
 * socket, SIGTERM drains and exits 0; bad arguments exit 1.  Waits on the
 * ready pipe and waitpid, never sleeps.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "wire.h"

static const char *mmnd;

static const char *notify_path;

/* Wait (poll, bounded) for a datagram on @ns containing @what. */
static bool got_notify(int ns, const char *what)
{
	char buf[512];

	for (;;) {
		struct pollfd pf = {.fd = ns, .events = POLLIN};
		ssize_t n;

		if (poll(&pf, 1, 10000) <= 0)
			return false;
		n = recv(ns, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			return false;
		buf[n] = 0;
		if (strstr(buf, what))
			return true;
	}
}

static pid_t spawn(char *const argv[], int ready_w, int *errfd)
{
	int e[2];
	pid_t pid;

	if (pipe(e) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		if (notify_path) {
			char pidbuf[16];

			snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
			setenv("NOTIFY_SOCKET", notify_path, 1);
			setenv("WATCHDOG_USEC", "100000", 1);
			setenv("WATCHDOG_PID", pidbuf, 1);
		}
		dup2(e[1], 2);
		if (ready_w >= 0 && ready_w != 3) {
			dup2(ready_w, 3);
			close(ready_w);
		}
		execv(mmnd, argv);
		_exit(127);
	}
	close(e[1]);
	*errfd = e[0];
	return pid;
}

static int wait_exit(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void)
{
	char dir[] = "/tmp/mmnd-test-XXXXXX", path[128], sockarg[160], buf[64];
	int p[2], errfd, fd, memfd = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep = NULL;
	uint8_t pkt[MMN_WIRE_MAX_MSG];
	size_t nfds;
	ssize_t n;
	pid_t pid;

	mmnd = getenv("MMND");
	if (!mmnd)
		tap_skip_all("MMND not set (run through meson test)");
	signal(SIGPIPE, SIG_IGN);
	tap_require(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/mmnd.sock", dir);
	snprintf(sockarg, sizeof(sockarg), "--socket=%s", path);

	{
		char *argv[] = {(char *)"mmnd", (char *)"--max-subs=0", NULL};

		pid = spawn(argv, -1, &errfd);
		tap_is_int(wait_exit(pid), 1, "bad limits: exit 1");
		close(errfd);
	}
	{
		char *argv[] = {(char *)"mmnd", (char *)"--source=bogus", sockarg, (char *)"--bus=none",
				NULL};

		pid = spawn(argv, -1, &errfd);
		tap_is_int(wait_exit(pid), 1, "unknown source: exit 1");
		close(errfd);
	}

	tap_require(pipe(p) == 0);
	{
		char *argv[] = {
			(char *)"mmnd",		(char *)"--source=test",     sockarg, (char *)"--bus=none",
			(char *)"--ready-fd=3", (char *)"--log-level=debug", NULL};

		pid = spawn(argv, p[1], &errfd);
	}
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	tap_is_str(buf, "READY=1\n", "ready-fd: READY=1 written");
	tap_is_int(read(p[0], buf, 1), 0, "ready-fd: then closed");
	close(p[0]);

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, path);
	tap_ok(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "socket: connect");
	hello.version_min = hello.version_max = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	mmn__wire_send(fd, &env, NULL, 0, 0);
	{
		struct pollfd pf = {.fd = fd, .events = POLLIN};

		poll(&pf, 1, 10000);
	}
	n = mmn__wire_recv(fd, pkt, sizeof(pkt), &memfd, 1, &nfds);
	tap_ok(n > 0 && mmn__wire_decode(pkt, (size_t)n, &rep) == 0 &&
		       rep->body_case == MMN__V1__ENVELOPE__BODY_HELLO_REPLY &&
		       strcmp(rep->hello_reply->source, "test") == 0 && nfds == 1,
	       "socket: HelloReply from the test source with the sequence page");
	mmn__wire_free(rep);
	if (nfds)
		close(memfd);

	kill(pid, SIGTERM);
	tap_is_int(wait_exit(pid), 0, "SIGTERM: drained and exited 0");
	{
		struct pollfd pf = {.fd = fd, .events = POLLIN};

		poll(&pf, 1, 10000);
		tap_ok(recv(fd, pkt, sizeof(pkt), MSG_DONTWAIT) == 0, "SIGTERM: the client sees EOF");
	}
	close(fd);
	tap_ok(access(path, F_OK) < 0 && errno == ENOENT, "SIGTERM: socket file removed");
	n = read(errfd, buf, sizeof(buf) - 1);
	tap_ok(n > 0 && buf[0] == '<', "log: stderr lines carry <N> priority prefixes");
	close(errfd);

	/* Under systemd: READY, WATCHDOG at half the interval, STOPPING. */
	{
		char npath[160];
		struct sockaddr_un na = {.sun_family = AF_UNIX};
		int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		char *argv[] = {(char *)"mmnd", (char *)"--source=test", sockarg, (char *)"--bus=none", NULL};

		snprintf(npath, sizeof(npath), "%s/notify", dir);
		strcpy(na.sun_path, npath);
		tap_require(ns >= 0 && bind(ns, (struct sockaddr *)&na, sizeof(na)) == 0);
		notify_path = npath;
		pid = spawn(argv, -1, &errfd);
		notify_path = NULL;
		tap_ok(got_notify(ns, "READY=1"), "sd_notify: READY=1");
		tap_ok(got_notify(ns, "WATCHDOG=1") && got_notify(ns, "WATCHDOG=1") &&
			       got_notify(ns, "WATCHDOG=1"),
		       "sd_notify: WATCHDOG=1 repeatedly (every half WATCHDOG_USEC)");
		kill(pid, SIGTERM);
		tap_ok(got_notify(ns, "STOPPING=1"), "sd_notify: STOPPING=1 on SIGTERM");
		tap_is_int(wait_exit(pid), 0, "sd_notify: exited 0");
		close(errfd);
		close(ns);
		unlink(npath);
	}
	rmdir(dir);
	return tap_done();
}
