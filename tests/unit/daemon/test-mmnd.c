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

/* Bad arguments: exit 1. */
static void test_bad_args(const char *sockarg)
{
	char *bad_limits[] = {(char *)"mmnd", (char *)"--max-subs=0", NULL};
	char *bad_source[] = {(char *)"mmnd", (char *)"--source=bogus", (char *)sockarg, (char *)"--bus=none",
			      NULL};
	int errfd;
	pid_t pid;

	pid = spawn(bad_limits, -1, &errfd);
	tap_is_int(wait_exit(pid), 1, "bad limits: exit 1");
	close(errfd);
	pid = spawn(bad_source, -1, &errfd);
	tap_is_int(wait_exit(pid), 1, "unknown source: exit 1");
	close(errfd);
}

/* mmnd --ready-fd=3: READY=1 on the pipe, then the pipe closed.  Its pid; its stderr in *@errfd. */
static pid_t start_ready(const char *sockarg, int *errfd)
{
	char *argv[] = {(char *)"mmnd",		(char *)"--source=test",     (char *)sockarg, (char *)"--bus=none",
			(char *)"--ready-fd=3", (char *)"--log-level=debug", NULL};
	char buf[64];
	ssize_t n;
	int p[2];
	pid_t pid;

	tap_require(pipe(p) == 0);
	pid = spawn(argv, p[1], errfd);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	tap_is_str(buf, "READY=1\n", "ready-fd: READY=1 written");
	tap_is_int(read(p[0], buf, 1), 0, "ready-fd: then closed");
	close(p[0]);
	return pid;
}

/* A Hello over the socket at @path gets the test source's HelloReply; the connection. */
static int hello(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	Mmn__V1__Hello h = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep = NULL;
	struct pollfd pf = {.events = POLLIN};
	uint8_t pkt[MMN_WIRE_MAX_MSG];
	int fd, memfd = -1;
	size_t nfds;
	ssize_t n;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, path);
	tap_ok(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "socket: connect");
	h.version_min = h.version_max = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &h;
	mmn__wire_send(fd, &env, NULL, 0, 0);
	pf.fd = fd;
	poll(&pf, 1, 10000);
	n = mmn__wire_recv(fd, pkt, sizeof(pkt), &memfd, 1, &nfds);
	tap_ok(n > 0 && mmn__wire_decode(pkt, (size_t)n, &rep) == 0 &&
		       rep->body_case == MMN__V1__ENVELOPE__BODY_HELLO_REPLY &&
		       strcmp(rep->hello_reply->source, "test") == 0 && nfds == 1,
	       "socket: HelloReply from the test source with the sequence page");
	mmn__wire_free(rep);
	if (nfds)
		close(memfd);
	return fd;
}

/* SIGTERM: mmnd drains and exits 0, the client @fd sees EOF, the socket file goes. */
static void test_sigterm(pid_t pid, int fd, const char *path, int errfd)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	uint8_t pkt[64];
	char buf[64];
	ssize_t n;

	kill(pid, SIGTERM);
	tap_is_int(wait_exit(pid), 0, "SIGTERM: drained and exited 0");
	poll(&pf, 1, 10000);
	tap_ok(recv(fd, pkt, sizeof(pkt), MSG_DONTWAIT) == 0, "SIGTERM: the client sees EOF");
	close(fd);
	tap_ok(access(path, F_OK) < 0 && errno == ENOENT, "SIGTERM: socket file removed");
	n = read(errfd, buf, sizeof(buf) - 1);
	tap_ok(n > 0 && buf[0] == '<', "log: stderr lines carry <N> priority prefixes");
	close(errfd);
}

/* Under systemd (NOTIFY_SOCKET in @dir): READY, WATCHDOG at half the interval, STOPPING. */
static void test_sd_notify(const char *dir, const char *sockarg)
{
	char npath[160];
	struct sockaddr_un na = {.sun_family = AF_UNIX};
	int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), errfd;
	char *argv[] = {(char *)"mmnd", (char *)"--source=test", (char *)sockarg, (char *)"--bus=none", NULL};
	pid_t pid;

	snprintf(npath, sizeof(npath), "%s/notify", dir);
	strcpy(na.sun_path, npath);
	tap_require(ns >= 0 && bind(ns, (struct sockaddr *)&na, sizeof(na)) == 0);
	notify_path = npath;
	pid = spawn(argv, -1, &errfd);
	notify_path = NULL;
	tap_ok(got_notify(ns, "READY=1"), "sd_notify: READY=1");
	tap_ok(got_notify(ns, "WATCHDOG=1") && got_notify(ns, "WATCHDOG=1") && got_notify(ns, "WATCHDOG=1"),
	       "sd_notify: WATCHDOG=1 repeatedly (every half WATCHDOG_USEC)");
	kill(pid, SIGTERM);
	tap_ok(got_notify(ns, "STOPPING=1"), "sd_notify: STOPPING=1 on SIGTERM");
	tap_is_int(wait_exit(pid), 0, "sd_notify: exited 0");
	close(errfd);
	close(ns);
	unlink(npath);
}

int main(void)
{
	char dir[] = "/tmp/mmnd-test-XXXXXX", path[128], sockarg[160];
	int errfd, fd;
	pid_t pid;

	mmnd = getenv("MMND");
	if (!mmnd)
		tap_skip_all("MMND not set (run through meson test)");
	signal(SIGPIPE, SIG_IGN);
	tap_require(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/mmnd.sock", dir);
	snprintf(sockarg, sizeof(sockarg), "--socket=%s", path);

	test_bad_args(sockarg);
	pid = start_ready(sockarg, &errfd);
	fd = hello(path);
	test_sigterm(pid, fd, path, errfd);
	test_sd_notify(dir, sockarg);
	rmdir(dir);
	return tap_done();
}
