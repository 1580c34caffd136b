/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd's per-uid limits with real uids (needs root to drop to other uids):
 * one uid at its connection cap gets Error{-EUSERS} while another uid still
 * gets its HelloReply; one uid at its subscription cap gets Error{-EDQUOT}
 * while another still subscribes; a connection that never says Hello is
 * closed at the deadline with Error{-ETIMEDOUT}.  Children report over
 * pipes; every wait is a bounded poll, nothing sleeps.
 */
#include <errno.h>
#include <grp.h>
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

#include "mmnd-run.h"
#include "tap.h"
#include "wire.h"

#define req(cond)                                                                                            \
	do {                                                                                                 \
		if (!(cond))                                                                                 \
			tap_require(cond);                                                                   \
	} while (0)

#define CAP	 3 /* --max-clients-per-uid */
#define SUBS_CAP 2 /* --max-subs-per-uid */
#define UID_A	 65534
#define UID_B	 65533

static const char *mmnd;
static char dir[] = "/tmp/mmnd-limits-XXXXXX";
static char path[128];

static pid_t start_mmnd(const char *a1, const char *a2)
{
	const char *args[] = {"--source=test", "--log-level=info", a1, a2, NULL};
	pid_t pid = mmnd_run_at(mmnd, path, args, 10000);

	req(pid > 0);
	return pid;
}

static void stop_mmnd(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
}

static int connect_raw(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* The next packet's body case (-1: none within 10 s or EOF); *@err: an Error's errno. */
static int recv_body(int fd, int *err, char *msg, size_t cap)
{
	uint8_t pkt[MMN_WIRE_MAX_MSG];
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	int fds[MMN_WIRE_MAX_FDS];
	MmnEnvelope *env;
	size_t nfds = 0;
	ssize_t n;
	int body;

	if (poll(&pf, 1, 10000) <= 0)
		return -1;
	n = mmn__wire_recv(fd, pkt, sizeof(pkt), fds, MMN_WIRE_MAX_FDS, &nfds);
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	if (n <= 0 || mmn__wire_decode(pkt, (size_t)n, &env) < 0)
		return -1;
	body = (int)env->body_case;
	if (body == MMN__V1__ENVELOPE__BODY_ERROR) {
		*err = env->error->error;
		if (msg)
			snprintf(msg, cap, "%s", env->error->message ? env->error->message : "");
	}
	mmn__wire_free(env);
	return body;
}

/* True when the peer closed within 10 s (after whatever it had queued). */
static bool eof_within(int fd)
{
	uint8_t b[MMN_WIRE_MAX_MSG];

	for (int i = 0; i < 16; i++) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pf, 1, 10000) <= 0)
			return false;
		n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return true;
	}
	return false;
}

static int hello(int fd)
{
	Mmn__V1__Hello h = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int err = 0;

	h.version_min = h.version_max = 1;
	env.request_id = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &h;
	if (mmn__wire_send(fd, &env, NULL, 0, 0) < 0)
		return -EIO;
	return recv_body(fd, &err, NULL, 0) == MMN__V1__ENVELOPE__BODY_HELLO_REPLY ? 0 : err ? err : -EPROTO;
}

/* Subscribe to a page of itself: 0 or the Error's errno. */
static int subscribe(int fd, uint64_t start)
{
	Mmn__V1__Subscribe s = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int err = 0;

	s.start = start;
	s.length = 0x1000;
	s.flags = MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	env.request_id = 2;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &s;
	if (mmn__wire_send(fd, &env, NULL, 0, 0) < 0)
		return -EIO;
	return recv_body(fd, &err, NULL, 0) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY ? 0
	       : err								       ? err
										       : -EPROTO;
}

/* A child as @uid: runs @fn, which writes its results to @out; it exits once @hold closes. */
struct child {
	pid_t pid;
	int results; /* read end */
	int hold;    /* write end: close to let it exit */
};

static void spawn_as(struct child *ch, uid_t uid, void (*fn)(int out))
{
	int r[2], h[2];

	req(pipe(r) == 0 && pipe(h) == 0);
	fflush(stdout);
	ch->pid = fork();
	req(ch->pid >= 0);
	if (ch->pid == 0) {
		char b;

		close(r[0]);
		close(h[1]);
		if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
			_exit(126);
		fn(r[1]);
		close(r[1]);
		/* Keep every connection open until the parent has looked. */
		(void)!read(h[0], &b, 1);
		_exit(0);
	}
	close(r[1]);
	close(h[0]);
	ch->results = r[0];
	ch->hold = h[1];
}

/* The child's next result (bounded wait); INT32_MIN if none came. */
static int result(struct child *ch)
{
	struct pollfd pf = {.fd = ch->results, .events = POLLIN};
	int v;

	if (poll(&pf, 1, 10000) <= 0 || read(ch->results, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return INT32_MIN;
	return v;
}

static void release(struct child *ch)
{
	int st;

	close(ch->hold);
	close(ch->results);
	waitpid(ch->pid, &st, 0);
}

static void put(int out, int v)
{
	(void)!write(out, &v, sizeof(v));
}

/* Uid A: CAP idle connections (no Hello), then one more. */
static void flood(int out)
{
	char msg[128] = "";
	int err = 0, n = 0, over, body;

	for (int i = 0; i < CAP; i++)
		n += connect_raw() >= 0; /* left open until exit */
	put(out, n);
	over = connect_raw();
	body = over < 0 ? -1 : recv_body(over, &err, msg, sizeof(msg));
	put(out, body == MMN__V1__ENVELOPE__BODY_ERROR ? err : body);
	put(out, strstr(msg, "uid 65534") != NULL);
	put(out, over >= 0 && eof_within(over));
}

/* Any uid: a connection with Hello. */
static void one_hello(int out)
{
	int fd = connect_raw();

	put(out, fd < 0 ? -ECONNREFUSED : hello(fd));
}

/* Uid A: two connections, SUBS_CAP subscriptions on the first, one more on the second. */
static void subs_flood(int out)
{
	int a = connect_raw(), b = connect_raw();
	int ok = 0;

	put(out, hello(a) == 0 && hello(b) == 0);
	for (int i = 0; i < SUBS_CAP; i++)
		ok += subscribe(a, 0x200000 + 0x1000 * (uint64_t)i) == 0;
	put(out, ok);
	put(out, subscribe(b, 0x300000));
}

/* Any uid: one connection, one subscription. */
static void one_sub(int out)
{
	int fd = connect_raw();

	put(out, fd >= 0 && hello(fd) == 0 ? subscribe(fd, 0x200000) : -ECONNREFUSED);
}

static void test_connections(void)
{
	struct child a, b, root_b;
	pid_t m = start_mmnd("--max-clients-per-uid="
			     "3",
			     "--hello-timeout-ms=600000");

	spawn_as(&a, UID_A, flood);
	tap_is_int(result(&a), CAP, "uid 65534: 3 idle connections (its cap) accepted");
	tap_is_int(result(&a), -EUSERS, "uid 65534: the 4th gets Error -EUSERS");
	tap_is_int(result(&a), 1, "uid 65534: the message names the uid");
	tap_is_int(result(&a), 1, "uid 65534: then EOF");
	spawn_as(&b, UID_B, one_hello);
	tap_is_int(result(&b), 0, "uid 65533: still gets its HelloReply while 65534 is at its cap");
	release(&b);
	spawn_as(&root_b, 0, one_hello);
	tap_is_int(result(&root_b), 0, "root: exempt, gets its HelloReply");
	release(&root_b);
	release(&a);
	spawn_as(&a, UID_A, one_hello);
	tap_is_int(result(&a), 0, "uid 65534: once its connections closed, it connects again");
	release(&a);
	stop_mmnd(m);
}

static void test_subscriptions(void)
{
	struct child a, b;
	pid_t m = start_mmnd("--max-subs-per-uid=2", NULL);

	spawn_as(&a, UID_A, subs_flood);
	tap_is_int(result(&a), 1, "subs: uid 65534 has two connections");
	tap_is_int(result(&a), SUBS_CAP, "subs: uid 65534 subscribes up to its cap");
	tap_is_int(result(&a), -EDQUOT, "subs: one more, on another connection, gets Error -EDQUOT");
	spawn_as(&b, UID_B, one_sub);
	tap_is_int(result(&b), 0, "subs: uid 65533 is unaffected");
	release(&b);
	release(&a);
	stop_mmnd(m);
}

static void test_hello_deadline(void)
{
	pid_t m = start_mmnd("--hello-timeout-ms=100", NULL);
	int idle = connect_raw(), good = connect_raw(), err = 0;
	char msg[128] = "";
	struct pollfd pf;

	req(idle >= 0 && good >= 0);
	tap_is_int(hello(good), 0, "hello deadline: a client that says Hello is served");
	tap_is_int(recv_body(idle, &err, msg, sizeof(msg)), MMN__V1__ENVELOPE__BODY_ERROR,
		   "hello deadline: the idle connection gets an Error");
	tap_is_int(err, -ETIMEDOUT, "hello deadline: -ETIMEDOUT");
	tap_ok(strstr(msg, "Hello") != NULL, "hello deadline: the message says so (%s)", msg);
	tap_ok(eof_within(idle), "hello deadline: then EOF");
	pf = (struct pollfd){.fd = good, .events = POLLIN};
	tap_is_int(poll(&pf, 1, 0), 0, "hello deadline: the client that said Hello is still connected");
	tap_is_int(subscribe(good, 0x200000), 0, "hello deadline: and keeps working");
	close(idle);
	close(good);
	stop_mmnd(m);
}

int main(void)
{
	mmnd = getenv("MMND");
	if (!mmnd)
		tap_skip_all("MMND not set (run through meson test)");
	if (geteuid() != 0)
		tap_skip_all("needs root to run clients as other uids");
	signal(SIGPIPE, SIG_IGN);
	req(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
	snprintf(path, sizeof(path), "%s/mmnd.sock", dir);
	test_connections();
	test_subscriptions();
	test_hello_deadline();
	rmdir(dir);
	return tap_done();
}
