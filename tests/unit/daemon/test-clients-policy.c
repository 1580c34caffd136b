/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Authorisation: the ptrace-like rule as a truth table, credentials read
 * from /proc, and, end to end, a client of another uid (a forked child that
 * drops to nobody) that may watch the root test process only with a share
 * token the target created over its own connection.
 */
#include "harness.h"

#include "broker-internal.h"
#include "clients/policy.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#define NOBODY	65534
#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static void test_rule(void)
{
	struct peer_creds p = {.pid = 1, .uid = 1000, .gid = 1000};
	struct target_creds t = {{1000, 1000, 1000, 1000}, {1000, 1000, 1000, 1000}, true};

	tap_is_int(mmn__policy_may_watch(&p, &t), 0, "rule: same uid/gid, dumpable: allowed");
	t.dumpable = false;
	tap_is_int(mmn__policy_may_watch(&p, &t), -EPERM, "rule: not dumpable: denied");
	t.dumpable = true;
	t.uid[2] = 0;
	tap_is_int(mmn__policy_may_watch(&p, &t), -EPERM, "rule: saved uid differs (setuid program): denied");
	t.uid[2] = 1000;
	t.gid[1] = 5;
	tap_is_int(mmn__policy_may_watch(&p, &t), -EPERM, "rule: effective gid differs: denied");
	p.cap_sys_ptrace = true;
	tap_is_int(mmn__policy_may_watch(&p, &t), 0, "rule: CAP_SYS_PTRACE: allowed");
}

static void test_proc(void)
{
	struct target_creds t;

	tap_is_int(mmn__policy_read_target(getpid(), &t), 0, "proc: own credentials read");
	tap_ok(t.uid[0] == getuid() && t.uid[1] == geteuid() && t.gid[1] == getegid() && t.dumpable,
	       "proc: uids, gids, dumpable");
	tap_is_int(mmn__policy_read_target(0x3ffffff0, &t), -ESRCH, "proc: no such process");
}

/*
 * Child: become nobody, connect, Hello, Subscribe to @target (with @token if
 * given); report the reply's error (0 = subscribed) on @out.
 */
static void child(const char *path, pid_t target, const uint8_t *token, int out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	Mmn__V1__Subscribe s = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *m;
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fd, fds[2], res = -EIO;
	size_t nfds;
	ssize_t n;

	if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		_exit(2);
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	hello.version_min = hello.version_max = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	mmn__wire_send(fd, &env, NULL, 0, 0);
	s.pid = target;
	s.start = 0x100000;
	s.length = 0x1000;
	s.flags = MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	if (token) {
		s.share_token.data = (uint8_t *)token;
		s.share_token.len = 16;
	}
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &s;
	mmn__wire_send(fd, &env, NULL, 0, 0);
	for (int i = 0; i < 2; i++) {
		/* Blocking receive: the parent drives the broker's loop meanwhile. */
		n = recv(fd, buf, sizeof(buf), MSG_PEEK);
		if (n <= 0)
			goto out;
		n = mmn__wire_recv(fd, buf, sizeof(buf), fds, 2, &nfds);
		for (size_t k = 0; k < nfds; k++)
			close(fds[k]);
		if (n <= 0 || mmn__wire_decode(buf, (size_t)n, &m) < 0)
			goto out;
		if (m->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY)
			res = 0;
		else if (m->body_case == MMN__V1__ENVELOPE__BODY_ERROR)
			res = m->error->error;
		mmn__wire_free(m);
	}
out:
	if (write(out, &res, sizeof(res)) != sizeof(res))
		_exit(3);
	_exit(0);
}

/* Fork the child and drive the loop until it reports. */
static int run_child(struct harness *h, const uint8_t *token)
{
	int p[2], res = -EIO;
	pid_t pid;

	h_require(pipe(p) == 0);
	pid = fork();
	h_require(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		child(h->path, getppid(), token, p[1]);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		ssize_t n = read(p[0], &res, sizeof(res));

		if (n == sizeof(res) || n == 0)
			break;
		/* Block in the loop until the child's traffic arrives; no sleeping. */
		uv_run(&h->loop, UV_RUN_ONCE);
	}
	close(p[0]);
	waitpid(pid, NULL, 0);
	h_pump(h, 5);
	return res;
}

static void test_share(void)
{
	struct harness h;
	struct tclient t;
	Mmn__V1__Share sh = MMN__V1__SHARE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *m;
	uint8_t token[16] = {0}, wrong[16] = {0};

	if (geteuid() != 0) {
		tap_ok(1, "# SKIP share: needs root to fork a client of another uid");
		return;
	}
	h_init(&h, NULL);
	chmod(h.dir, 0711);
	h_require(tc_hello(&h, &t) == 0);
	/* The child runs as nobody and we are root: without a token it may not watch us. */
	tap_is_int(run_child(&h, NULL), -EPERM, "share: another uid without a token: -EPERM");
	sh.start = 0x100000;
	sh.length = 0x10000;
	sh.peer_uid = NOBODY;
	env.request_id = 5;
	env.body_case = MMN__V1__ENVELOPE__BODY_SHARE;
	env.share = &sh;
	tc_send(&t, &env);
	m = tc_recv(&h, &t);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_SHARE_REPLY && m->share_reply->token.len == 16,
	       "share: ShareReply with a 16-byte token");
	if (BODY(m) == MMN__V1__ENVELOPE__BODY_SHARE_REPLY)
		memcpy(token, m->share_reply->token.data, 16);
	mmn__wire_free(m);
	tap_is_int(run_child(&h, wrong), -EPERM, "share: a wrong token: -EPERM");
	tap_is_int(run_child(&h, token), 0, "share: the target's token for that uid and range: subscribed");
	tc_close(&t);
	tap_is_int(h_fini(&h), 0, "share: loop closes clean");
}

int main(void)
{
	test_rule();
	test_proc();
	test_share();
	return tap_done();
}
