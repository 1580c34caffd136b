/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Every protocol error path, with raw packets: the offender gets Error
 * (and is dropped for malformed/oversized/unknown/out-of-order messages),
 * while a healthy client on the same broker keeps working.
 */
#include "harness.h"
#include "lib/prng.h"

#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static struct harness h;
static struct tclient good;
static uint64_t good_sub;

static const uint64_t A = 0x200000;

/* Expect Error{err} on @fd, then, if @dropped, EOF. */
static void expect_error(int fd, int err, bool dropped, const char *what)
{
	MmnEnvelope *m = tc_recv_fd(&h, fd, NULL);
	bool ok = BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == err;

	if (!ok)
		tap_diag("  got body %d error %d", BODY(m),
			 BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR ? m->error->error : 0);
	mmn__wire_free(m);
	if (dropped)
		ok = ok && tc_eof(&h, fd);
	tap_ok(ok, "%s: Error %d%s", what, err, dropped ? " and dropped" : ", still connected");
}

/*
 * An Ack has no reply, and a late one (its event ended: deadline, eviction)
 * is no error.  Proof that nothing was sent for it: the next packet on @fd
 * is the Error for an Unsubscribe of an unknown id sent after it.
 */
static void expect_no_reply(int fd, const char *what)
{
	Mmn__V1__Unsubscribe u = MMN__V1__UNSUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	u.sub_id = 987654321;
	env.request_id = 4242;
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE;
	env.unsubscribe = &u;
	h_require(mmn__wire_send(fd, &env, NULL, 0, 0) == 0);
	MmnEnvelope *m = tc_recv_fd(&h, fd, NULL);
	bool ok = BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR && m->request_id == 4242;

	if (!ok)
		tap_diag("  got body %d request %llu", BODY(m), m ? (unsigned long long)m->request_id : 0ULL);
	mmn__wire_free(m);
	tap_ok(ok, "%s: no reply, still connected", what);
}

static int connect_hello(void)
{
	struct tclient c;

	h_require(tc_hello(&h, &c) == 0);
	munmap(c.page, c.page_size);
	return c.fd;
}

static void send_raw(int fd, const void *buf, size_t len)
{
	h_require(send(fd, buf, len, 0) == (ssize_t)len);
}

static void test_malformed(void)
{
	static const uint8_t truncated[] = {0x52, 0x05, 0x08, 0x01};	 /* hello, length 5, 2 bytes */
	static const uint8_t unknown[] = {0x08, 0x07, 0x98, 0x06, 0x01}; /* request_id 7, field 99 */
	static uint8_t big[MMN_WIRE_MAX_MSG + 100];
	int fd;

	fd = tc_connect_raw(&h);
	send_raw(fd, truncated, sizeof(truncated));
	expect_error(fd, -EBADMSG, true, "truncated envelope");
	close(fd);

	fd = connect_hello();
	send_raw(fd, truncated, sizeof(truncated));
	expect_error(fd, -EBADMSG, true, "truncated envelope after Hello");
	close(fd);

	fd = connect_hello();
	memset(big, 0x01, sizeof(big));
	send_raw(fd, big, sizeof(big));
	expect_error(fd, -EMSGSIZE, true, "oversized packet");
	close(fd);

	fd = connect_hello();
	send_raw(fd, unknown, sizeof(unknown));
	expect_error(fd, -EPROTO, true, "unknown body");
	close(fd);

	fd = connect_hello();
	memset(big, 0xff, 64);
	send_raw(fd, big, 64);
	expect_error(fd, -EBADMSG, true, "garbage");
	close(fd);
}

static void send_env(int fd, MmnEnvelope *env)
{
	h_require(mmn__wire_send(fd, env, NULL, 0, 0) == 0);
}

static void test_conversation(void)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	Mmn__V1__HelloReply hr = MMN__V1__HELLO_REPLY__INIT;
	Mmn__V1__Subscribe sub = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int fd;

	fd = tc_connect_raw(&h);
	hello.version_min = 3;
	hello.version_max = 5;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	send_env(fd, &env);
	expect_error(fd, -EPROTONOSUPPORT, true, "no common protocol version");
	close(fd);

	fd = tc_connect_raw(&h);
	hello.version_min = 0;
	hello.version_max = 0;
	send_env(fd, &env);
	expect_error(fd, -EPROTONOSUPPORT, true, "version 0 only");
	close(fd);

	fd = tc_connect_raw(&h);
	sub.length = 4096;
	sub.flags = MMN__V1__SUB_FLAG__SUB_BLOCKING;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &sub;
	send_env(fd, &env);
	expect_error(fd, -EPROTO, true, "Subscribe before Hello");
	close(fd);

	fd = connect_hello();
	hello.version_min = 1;
	hello.version_max = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	send_env(fd, &env);
	expect_error(fd, -EPROTO, true, "second Hello");
	close(fd);

	fd = connect_hello();
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO_REPLY;
	env.hello_reply = &hr;
	send_env(fd, &env);
	expect_error(fd, -EPROTO, true, "a message only mmnd sends");
	close(fd);

	/* A descriptor riding on a message that takes none is closed, nothing else. */
	{
		Mmn__V1__Ack ack = MMN__V1__ACK__INIT;
		int p[2];

		fd = connect_hello();
		h_require(pipe(p) == 0);
		ack.event_id = 12345;
		env.body_case = MMN__V1__ENVELOPE__BODY_ACK;
		env.ack = &ack;
		h_require(mmn__wire_send(fd, &env, &p[0], 1, 0) == 0);
		close(p[0]);
		expect_no_reply(fd, "Ack of an unknown event (with a stray fd)");
		/* The stray read end was closed by mmnd: the pipe has no reader left. */
		h_pump(&h, 3);
		tap_ok(write(p[1], "x", 1) < 0 && errno == EPIPE, "stray descriptor closed by mmnd");
		close(p[1]);
		close(fd);
	}
}

static void subscribe_err(struct tclient *c, int32_t pid, uint64_t start, uint64_t length, uint32_t flags,
			  uint64_t mask, size_t token_len, int err, const char *what)
{
	Mmn__V1__Subscribe s = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	uint8_t token[32] = {0};

	s.pid = pid;
	s.start = start;
	s.length = length;
	s.flags = flags;
	s.event_mask = mask;
	s.share_token.data = token;
	s.share_token.len = token_len;
	env.request_id = 42;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &s;
	send_env(c->fd, &env);
	expect_error(c->fd, err, false, what);
}

static void test_subscribe_args(void)
{
	struct tclient c;
	const uint32_t B = MMN__V1__SUB_FLAG__SUB_BLOCKING, NB = MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	const uint64_t top = (UINT64_C(1) << 47) - 4096;

	h_require(tc_hello(&h, &c) == 0);
	subscribe_err(&c, 0, A, 0, B, 0, 0, -EINVAL, "Subscribe length 0");
	subscribe_err(&c, 0, top - 4096, 8192 + 4096, B, 0, 0, -EOVERFLOW, "Subscribe past TASK_SIZE");
	subscribe_err(&c, 0, UINT64_MAX - 10, 100, B, 0, 0, -EOVERFLOW, "Subscribe wrapping around");
	subscribe_err(&c, 0, A, 4096, 0, 0, 0, -EINVAL, "Subscribe without a flag");
	subscribe_err(&c, 0, A, 4096, B | NB, 0, 0, -EINVAL, "Subscribe with both flags");
	subscribe_err(&c, 0, A, 4096, 8, 0, 0, -EINVAL, "Subscribe with an unknown flag");
	subscribe_err(&c, 0, A, 4096, B, UINT64_C(1) << 40, 0, -EINVAL,
		      "Subscribe with an unknown event bit");
	subscribe_err(&c, 0, A, 4096, B, 0, 5, -EINVAL, "Subscribe with a malformed share token");
	subscribe_err(&c, -5, A, 4096, B, 0, 0, -EINVAL, "Subscribe with a negative pid");
	subscribe_err(&c, 0x3ffffff0, A, 4096, B, 0, 0, -ESRCH, "Subscribe to a process that does not exist");
	{
		uint32_t slot;
		uint64_t s = tc_subscribe(&h, &c, top - 4096, 4096, false, 0, &slot);

		tap_ok(s != 0, "Subscribe of the last page below TASK_SIZE works");
	}
	/* Effective timeout is capped. */
	{
		MmnEnvelope *m = tc_subscribe_req(&h, &c, 0, A, 4096, B, 999999);

		tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY &&
			       m->subscribe_reply->ack_timeout_ms == MMN_BROKER_DEFAULT_ACK_CAP_MS,
		       "Subscribe: a huge timeout is capped at the global cap");
		mmn__wire_free(m);
		m = tc_subscribe_req(&h, &c, 0, A, 4096, B, 0);
		tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY &&
			       m->subscribe_reply->ack_timeout_ms == MMN_BROKER_DEFAULT_ACK_TIMEOUT_MS,
		       "Subscribe: 0 means the default timeout");
		mmn__wire_free(m);
	}
	/* Unsubscribe twice. */
	{
		uint64_t s = tc_subscribe(&h, &c, A + 0x10000, 4096, false, 0, NULL);
		MmnEnvelope *m;

		tc_unsubscribe_send(&c, s);
		m = tc_recv(&h, &c);
		tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_STATUS && m->status->error == 0,
		       "Unsubscribe: Status 0");
		mmn__wire_free(m);
		tc_unsubscribe_send(&c, s);
		expect_error(c.fd, -ENOENT, false, "Unsubscribe twice");
		tc_unsubscribe_send(&c, 987654);
		expect_error(c.fd, -ENOENT, false, "Unsubscribe of an unknown id");
	}
	/* Ack of an unknown event, of a known event by the wrong sub. */
	tc_ack(&c, 1, 999999);
	expect_no_reply(c.fd, "Ack of an unknown event");
	{
		Mmn__V1__AttachUffd au = MMN__V1__ATTACH_UFFD__INIT;
		MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

		env.body_case = MMN__V1__ENVELOPE__BODY_ATTACH_UFFD;
		env.attach_uffd = &au;
		send_env(c.fd, &env);
		expect_error(c.fd, -EOPNOTSUPP, false, "AttachUffd with a source that needs none");
	}
	tc_close(&c);
}

static void test_limits(void)
{
	struct broker_options o;
	struct harness h2;
	struct tclient a, b;
	int fd;

	mmn__broker_options_default(&o);
	o.max_clients = 2;
	o.max_subs = 2;
	/* Use a second broker with small limits; swap the global harness for the helpers. */
	h2 = h;
	h_init(&h, &o);
	h_require(tc_hello(&h, &a) == 0 && tc_hello(&h, &b) == 0);
	fd = tc_connect_raw(&h);
	expect_error(fd, -EUSERS, true, "max clients");
	close(fd);
	tap_ok(tc_subscribe(&h, &a, A, 4096, false, 0, NULL) &&
		       tc_subscribe(&h, &a, A + 8192, 4096, false, 0, NULL),
	       "max subs: two allowed");
	subscribe_err(&a, 0, A + 0x10000, 4096, MMN__V1__SUB_FLAG__SUB_BLOCKING, 0, 0, -ENOSPC, "max subs");
	tc_close(&a);
	tc_close(&b);
	tap_is_int(h_fini(&h), 0, "limits: loop closes clean");
	h = h2;
}

/*
 * Mutated valid messages from many short connections: whatever mmnd makes of
 * them, it must not crash or leak, and the healthy client must not notice.
 */
static uint64_t rng = 0xdeadbeefcafef00dULL;

static uint64_t rnd(void)
{
	return prng_xorshift(&rng);
}

static void test_mutations(void)
{
	int rounds = getenv("MMN_TEST_VALGRIND") ? 150 : 600;
	uint8_t buf[MMN_WIRE_MAX_MSG];

	for (int i = 0; i < rounds; i++) {
		int fd = connect_hello();
		int nmsg = 1 + (int)(rnd() % 6);

		for (int k = 0; k < nmsg; k++) {
			Mmn__V1__Subscribe sub = MMN__V1__SUBSCRIBE__INIT;
			Mmn__V1__Ack ack = MMN__V1__ACK__INIT;
			Mmn__V1__Unsubscribe un = MMN__V1__UNSUBSCRIBE__INIT;
			Mmn__V1__Share sh = MMN__V1__SHARE__INIT;
			MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
			int len, flips;

			env.request_id = rnd();
			switch (rnd() % 4) {
			case 0:
				sub.start = A + (rnd() % 16) * 4096;
				sub.length = rnd() % 3 ? 4096 * (1 + rnd() % 4) : rnd();
				sub.flags = (uint32_t)(rnd() % 4);
				sub.pid = rnd() % 8 ? 0 : (int32_t)rnd();
				sub.ack_timeout_ms = (uint32_t)rnd();
				env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
				env.subscribe = &sub;
				break;
			case 1:
				ack.sub_id = rnd() % 8;
				ack.event_id = rnd() % 8;
				env.body_case = MMN__V1__ENVELOPE__BODY_ACK;
				env.ack = &ack;
				break;
			case 2:
				un.sub_id = rnd() % 64;
				env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE;
				env.unsubscribe = &un;
				break;
			default:
				sh.start = rnd();
				sh.length = rnd();
				env.body_case = MMN__V1__ENVELOPE__BODY_SHARE;
				env.share = &sh;
				break;
			}
			len = mmn__wire_encode(&env, buf, sizeof(buf));
			h_require(len > 0);
			flips = (int)(rnd() % 4);
			for (int f = 0; f < flips; f++)
				buf[rnd() % (uint64_t)len] ^= (uint8_t)(1u << (rnd() % 8));
			if (rnd() % 8 == 0)
				len = (int)(rnd() % (uint64_t)len);
			if (send(fd, buf, (size_t)len, MSG_DONTWAIT) < 0)
				break;
			h_pump(&h, 1);
		}
		h_pump(&h, 2);
		close(fd);
	}
	h_pump(&h, 5);
	{
		struct admin_stats st;
		struct tclient c;
		int r = tc_hello(&h, &c);

		mmn__admin_stats(h.b, &st);
		tap_ok(r == 0 && st.protocol_errors > 10,
		       "mutations: after %d connections (%llu dropped for bad messages) mmnd still serves",
		       rounds, (unsigned long long)st.protocol_errors - 10);
		if (r == 0)
			tc_close(&c);
	}
}

int main(void)
{
	struct admin_stats st;
	uint64_t ev;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &good) == 0);
	good_sub = tc_subscribe(&h, &good, A, 0x1000, true, 5000, NULL);
	h_require(good_sub);

	test_malformed();
	test_conversation();
	test_subscribe_args();
	test_limits();
	h_pump(&h, 5);
	{
		struct admin_stats st0;

		mmn__admin_stats(h.b, &st0);
		tap_is_int(st0.protocol_errors, 10, "every dropped offender counted as a protocol error");
	}
	test_mutations();

	h_pump(&h, 5);
	mmn__admin_stats(h.b, &st);
	tap_ok(st.subscriptions == 1, "mutations: only the healthy client's subscription is left (%llu)",
	       (unsigned long long)st.subscriptions);
	tap_is_int(mmn__broker_nclients(h.b), 1, "only the healthy client is left");
	ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);
	{
		MmnEnvelope *m = tc_recv(&h, &good);

		tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE && m->invalidate->sub_id == good_sub,
		       "the healthy client still gets its invalidation");
		mmn__wire_free(m);
	}
	tc_ack(&good, good_sub, ev);
	h_pump(&h, 5);
	tap_ok(mmn__source_test_acked(h.src, ev), "and its ack still reaches the source");
	mmn__source_test_end(h.src, ev);
	mmn__wire_free(tc_recv(&h, &good));
	tc_close(&good);
	tap_is_int(h_fini(&h), 0, "loop closes clean");
	return tap_done();
}
