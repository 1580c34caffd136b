/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd's --socket never clobbers: a regular file, a symlink (and what it
 * points to), a directory or another mmnd's live socket at PATH are left
 * untouched and mmnd exits 1 saying why; a stale socket is replaced.
 * Numeric options out of range exit 1 naming the option and its range.
 * Waits on the ready pipe, stderr and waitpid with bounded polls, never sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "wire.h"

/* Like tap_require, but silent when it holds: setup steps are not test points. */
#define req(cond)                                                                                            \
	do {                                                                                                 \
		if (!(cond))                                                                                 \
			tap_require(cond);                                                                   \
	} while (0)

static const char *mmnd;
static char dir[] = "/tmp/mmnd-opt-XXXXXX";

struct run {
	pid_t pid;
	bool ready; /* it wrote READY=1: still running */
	int status; /* exit code once exited */
	int errfd;  /* its stderr while ready, else -1 */
	char err[4096];
};

/* Read what is left on @fd into @buf (bounded by poll timeouts). */
static void slurp(int fd, char *buf, size_t cap)
{
	size_t n = strlen(buf);

	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		ssize_t k;

		if (poll(&pf, 1, 10000) <= 0 || n + 1 >= cap)
			break;
		k = read(fd, buf + n, cap - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		buf[n] = 0;
	}
}

/* Start mmnd --source=test --bus=none --ready-fd=3 ARGS...; wait until ready or exited. */
static void start(struct run *r, const char *a1, const char *a2)
{
	char *argv[8] = {(char *)"mmnd", (char *)"--source=test", (char *)"--bus=none",
			 (char *)"--ready-fd=3"};
	int rp[2], ep[2], n = 4;
	char buf[16] = "";
	struct pollfd pf;

	if (a1)
		argv[n++] = (char *)a1;
	if (a2)
		argv[n++] = (char *)a2;
	argv[n] = NULL;
	memset(r, 0, sizeof(*r));
	req(pipe(rp) == 0 && pipe(ep) == 0);
	fflush(stdout);
	r->pid = fork();
	req(r->pid >= 0);
	if (r->pid == 0) {
		dup2(ep[1], 2);
		dup2(rp[1], 3);
		execv(mmnd, argv);
		_exit(127);
	}
	close(rp[1]);
	close(ep[1]);
	pf = (struct pollfd){.fd = rp[0], .events = POLLIN};
	r->errfd = -1;
	if (poll(&pf, 1, 10000) > 0 && read(rp[0], buf, sizeof(buf) - 1) > 0 && strstr(buf, "READY=1")) {
		r->ready = true;
		r->errfd = dup(ep[0]);
	} else {
		int st;

		slurp(ep[0], r->err, sizeof(r->err));
		req(waitpid(r->pid, &st, 0) == r->pid);
		r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	close(rp[0]);
	close(ep[0]);
}

static void stop(struct run *r)
{
	int st;

	if (!r->ready)
		return;
	kill(r->pid, SIGTERM);
	waitpid(r->pid, &st, 0);
	r->ready = false;
	slurp(r->errfd, r->err, sizeof(r->err));
	close(r->errfd);
	r->errfd = -1;
}

/*
 * Connect and Hello: true on a HelloReply.  @leave_unread: close as soon as
 * the reply is there, without reading it (mmnd then sees ECONNRESET).
 * @garbage: after the reply, send an undecodable packet and wait for the
 * Error (mmnd drops the client for it) before closing.
 */
static bool hello_ex(const char *path, bool leave_unread, bool garbage)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep = NULL;
	uint8_t pkt[MMN_WIRE_MAX_MSG];
	struct pollfd pf;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), memfd = -1;
	size_t nfds = 0;
	ssize_t n;
	bool ok;

	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return false;
	}
	hello.version_min = hello.version_max = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	mmn__wire_send(fd, &env, NULL, 0, 0);
	pf = (struct pollfd){.fd = fd, .events = POLLIN};
	poll(&pf, 1, 10000);
	if (leave_unread) {
		close(fd);
		return pf.revents & POLLIN;
	}
	n = mmn__wire_recv(fd, pkt, sizeof(pkt), &memfd, 1, &nfds);
	ok = n > 0 && mmn__wire_decode(pkt, (size_t)n, &rep) == 0 &&
	     rep->body_case == MMN__V1__ENVELOPE__BODY_HELLO_REPLY;
	mmn__wire_free(rep);
	if (nfds)
		close(memfd);
	if (ok && garbage) {
		static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};

		ok = send(fd, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk) && poll(&pf, 1, 10000) == 1;
	}
	close(fd);
	return ok;
}

static bool hello_ok(const char *path)
{
	return hello_ex(path, false, false);
}

static void write_file(const char *path, const char *content, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	req(fd >= 0 && write(fd, content, strlen(content)) == (ssize_t)strlen(content));
	req(fchmod(fd, mode) == 0);
	close(fd);
}

/* @path is a regular file with exactly @content and @mode. */
static bool file_is(const char *path, const char *content, mode_t mode)
{
	char buf[256] = "";
	struct stat st;
	int fd;
	ssize_t n;

	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 07777) != mode)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n >= 0 && strcmp(buf, content) == 0;
}

static void expect_refused(struct run *r, const char *words, const char *what)
{
	tap_ok(!r->ready && r->status == 1, "%s: mmnd exits 1 (%s)", what,
	       r->ready ? "it started serving" : "exited");
	tap_ok(strstr(r->err, words) != NULL, "%s: it says \"%s\"", what, words);
	if (!strstr(r->err, words))
		tap_diag("  stderr: %s", r->err);
	stop(r);
}

static void test_socket_path(void)
{
	char path[128], target[128], arg[160];
	struct run r, a;
	struct stat st;

	snprintf(path, sizeof(path), "%s/mmnd.sock", dir);
	snprintf(target, sizeof(target), "%s/precious", dir);
	snprintf(arg, sizeof(arg), "--socket=%s", path);

	write_file(path, "do not delete\n", 0640);
	start(&r, arg, NULL);
	expect_refused(&r, "exists and is not a socket", "regular file");
	tap_ok(file_is(path, "do not delete\n", 0640), "regular file: content and mode untouched");
	unlink(path);

	write_file(target, "the target\n", 0600);
	req(symlink(target, path) == 0);
	start(&r, arg, NULL);
	expect_refused(&r, "exists and is not a socket", "symlink to a file");
	tap_ok(lstat(path, &st) == 0 && S_ISLNK(st.st_mode), "symlink to a file: the symlink stays");
	tap_ok(file_is(target, "the target\n", 0600),
	       "symlink to a file: its target's content and mode untouched");
	unlink(path);
	unlink(target);

	req(mkdir(path, 0700) == 0);
	start(&r, arg, NULL);
	expect_refused(&r, "exists and is not a socket", "directory");
	tap_ok(lstat(path, &st) == 0 && S_ISDIR(st.st_mode), "directory: still there");
	rmdir(path);

	start(&a, arg, NULL);
	req(a.ready);
	start(&r, arg, NULL);
	expect_refused(&r, "Another mmnd listens on", "live socket of another mmnd");
	tap_ok(hello_ok(path), "live socket of another mmnd: the first one still serves on it");
	stop(&a);

	{
		/* A stale socket: bound, never listened on, closed. */
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

		strcpy(sa.sun_path, path);
		req(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		close(fd);
	}
	start(&r, arg, NULL);
	tap_ok(r.ready, "stale socket: replaced, mmnd serves");
	tap_ok(hello_ok(path), "stale socket: a client gets its HelloReply");
	req(lstat(path, &st) == 0);
	tap_ok((st.st_mode & 0777) == 0666, "stale socket: the new one is mode 0666 (%o)",
	       (unsigned)(st.st_mode & 0777));
	stop(&r);
	tap_ok(access(path, F_OK) < 0 && errno == ENOENT, "stale socket: removed again at exit");
}

static void test_ranges(void)
{
	static const struct {
		const char *arg, *words;
	} cases[] = {
		{"--max-queued=1073741824", "--max-queued"},
		{"--max-queued=4294967296", "--max-queued"},
		{"--max-clients=0", "--max-clients"},
		{"--max-subs=99999999999999999999999", "--max-subs"},
		{"--ack-cap-ms=-1", "--ack-cap-ms"},
		{"--max-clients-per-uid=0", "--max-clients-per-uid"},
		{"--hello-timeout-ms=1s", "--hello-timeout-ms"},
	};
	char path[128], arg[160];
	struct run r;

	snprintf(path, sizeof(path), "%s/range.sock", dir);
	snprintf(arg, sizeof(arg), "--socket=%s", path);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		start(&r, arg, cases[i].arg);
		tap_ok(!r.ready && r.status == 1 && strstr(r.err, cases[i].words) && strstr(r.err, "between"),
		       "%s: exit 1 naming the option and its range", cases[i].arg);
		if (!strstr(r.err, "between"))
			tap_diag("  stderr: %s", r.err);
		stop(&r);
	}
	start(&r, arg, "--max-queued=1048576");
	tap_ok(r.ready, "--max-queued=1048576 (the maximum): accepted");
	stop(&r);
}

/* A client closing its end is a plain disconnect in the log; a real error keeps its reason. */
static void test_hangup_log(void)
{
	char path[128], arg[160];
	struct run r;

	snprintf(path, sizeof(path), "%s/log.sock", dir);
	snprintf(arg, sizeof(arg), "--socket=%s", path);
	start(&r, arg, "--log-level=debug");
	req(r.ready);
	tap_ok(hello_ok(path), "hangup: a client reads its HelloReply and closes");
	tap_ok(hello_ex(path, true, false), "hangup: a client closes with the HelloReply unread");
	tap_ok(hello_ex(path, false, true), "hangup: a client sends garbage after Hello");
	stop(&r);
	{
		int n = 0;

		for (const char *p = r.err; (p = strstr(p, "disconnected")); p++)
			n++;
		tap_ok(n >= 2, "hangup: both logged as disconnected (%d)", n);
	}
	tap_ok(!strstr(r.err, "Connection reset by peer") && !strstr(r.err, "Broken pipe"),
	       "hangup: no \"Connection reset by peer\" or \"Broken pipe\" in the log");
	tap_ok(strstr(r.err, "<7>Client") != NULL && strstr(r.err, "<6>Client") != NULL,
	       "hangup: disconnects at debug level, attaches at info");
	tap_ok(strstr(r.err, "detached: Bad message") != NULL,
	       "hangup: a real error still says why (Bad message)");
	if (!strstr(r.err, "disconnected"))
		tap_diag("  stderr: %s", r.err);
}

int main(void)
{
	mmnd = getenv("MMND");
	if (!mmnd)
		tap_skip_all("MMND not set (run through meson test)");
	signal(SIGPIPE, SIG_IGN);
	req(mkdtemp(dir) != NULL);
	test_socket_path();
	test_ranges();
	test_hangup_log();
	rmdir(dir);
	return tap_done();
}
