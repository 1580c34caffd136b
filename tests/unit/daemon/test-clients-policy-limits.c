/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-uid limits and the Hello deadline, in process (every client here has
 * the test's uid, so the limits are turned on for privileged uids too;
 * tests/host/daemon/test-clients-policy-uids.c covers several real uids).
 */
#include "harness.h"

#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static const uint64_t A = 0x200000;

/* Expect Error{@err} whose message contains @words (NULL: any) on @fd, then EOF. */
static bool got_error_eof(struct harness *h, int fd, int err, const char *words)
{
	MmnEnvelope *m = tc_recv_fd(h, fd, NULL);
	bool ok = BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == err &&
		  (!words || (m->error->message && strstr(m->error->message, words)));

	if (!ok)
		tap_diag("  got body %d error %d (%s)", BODY(m),
			 BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR ? m->error->error : 0,
			 BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR ? m->error->message : "");
	mmn__wire_free(m);
	return ok && tc_eof(h, fd);
}

static void test_connections(void)
{
	struct broker_options o;
	struct harness h;
	struct tclient c;
	int fds[3], over;

	mmn__broker_options_default(&o);
	o.max_clients = 8;
	o.max_clients_per_uid = 3;
	o.limit_privileged = true;
	h_init(&h, &o);
	for (int i = 0; i < 3; i++)
		fds[i] = tc_connect_raw(&h);
	tap_ok(mmn__broker_nclients(h.b) == 3, "per uid: 3 idle connections accepted (the cap)");
	over = tc_connect_raw(&h);
	tap_ok(got_error_eof(&h, over, -EUSERS, "uid"),
	       "per uid: the 4th gets Error -EUSERS naming the uid, EOF");
	close(over);
	tap_ok(mmn__broker_nclients(h.b) == 3, "per uid: the refused one was never a client");
	close(fds[0]);
	h_pump(&h, 5);
	tap_ok(tc_hello(&h, &c) == 0, "per uid: after one closed, a new one gets a HelloReply");
	tc_close(&c);
	close(fds[1]);
	close(fds[2]);
	tap_ok(h_fini(&h) == 0, "per uid: loop closes clean");

	/* A per-uid cap at or above max_clients still leaves a slot for another uid. */
	mmn__broker_options_default(&o);
	o.max_clients = 3;
	o.max_clients_per_uid = 10;
	o.limit_privileged = true;
	h_init(&h, &o);
	fds[0] = tc_connect_raw(&h);
	fds[1] = tc_connect_raw(&h);
	over = tc_connect_raw(&h);
	tap_ok(got_error_eof(&h, over, -EUSERS, "uid"),
	       "per uid: one uid holds at most max_clients - 1 even with a larger per-uid cap");
	close(over);
	close(fds[0]);
	close(fds[1]);
	tap_ok(h_fini(&h) == 0, "per uid (clamped): loop closes clean");

	/* Root and mmnd's own uid are exempt by default. */
	mmn__broker_options_default(&o);
	o.max_clients_per_uid = 1;
	h_init(&h, &o);
	{
		struct tclient a, b;

		tap_ok(tc_hello(&h, &a) == 0 && tc_hello(&h, &b) == 0,
		       "per uid: mmnd's own uid is exempt (2 connections with a cap of 1)");
		tc_close(&a);
		tc_close(&b);
	}
	tap_ok(h_fini(&h) == 0, "per uid (exempt): loop closes clean");
}

static int sub_error(struct harness *h, struct tclient *c)
{
	MmnEnvelope *m = tc_subscribe_req(h, c, 0, A, 0x1000, MMN__V1__SUB_FLAG__SUB_NONBLOCKING, 0);
	int r = BODY(m) == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY ? 0
		: BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR	   ? m->error->error
								   : -EPROTO;

	mmn__wire_free(m);
	return r;
}

static void test_subscriptions(void)
{
	struct broker_options o;
	struct harness h;
	struct tclient a, b;
	uint64_t first;

	mmn__broker_options_default(&o);
	o.max_subs_per_uid = 3;
	o.limit_privileged = true;
	h_init(&h, &o);
	h_require(tc_hello(&h, &a) == 0 && tc_hello(&h, &b) == 0);
	first = tc_subscribe(&h, &a, A, 0x1000, false, 0, NULL);
	tap_ok(first && sub_error(&h, &a) == 0 && sub_error(&h, &b) == 0,
	       "subs per uid: 3 subscriptions over two connections");
	tap_is_int(sub_error(&h, &b), -EDQUOT, "subs per uid: the 4th gets Error -EDQUOT");
	tap_is_int(sub_error(&h, &a), -EDQUOT, "subs per uid: on either connection");
	h_require(tc_unsubscribe_send(&a, first) == 0);
	mmn__wire_free(tc_recv(&h, &a));
	tap_is_int(sub_error(&h, &b), 0, "subs per uid: an Unsubscribe makes room for one");
	tc_close(&a);
	h_pump(&h, 5);
	/* b holds 2 now; a's one went with it. */
	tap_ok(sub_error(&h, &b) == 0, "subs per uid: a closed connection's subscriptions no longer count");
	tap_is_int(sub_error(&h, &b), -EDQUOT, "subs per uid: and the cap holds again at 3");
	tc_close(&b);
	tap_ok(h_fini(&h) == 0, "subs per uid: loop closes clean");
}

static void tick_cb(uv_timer_t *t)
{
}

/* Run the loop (blocking, at most ~5 s in 20 ms ticks) until @fd has a packet or EOF. */
static bool wait_readable(struct harness *h, int fd)
{
	uv_timer_t tick;
	bool ready = false;

	uv_timer_init(&h->loop, &tick);
	uv_timer_start(&tick, tick_cb, 20, 20);
	for (int i = 0; i < 250 && !ready; i++) {
		uint8_t b;

		uv_run(&h->loop, UV_RUN_ONCE);
		ready = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) >= 0 || errno != EAGAIN;
	}
	uv_close((uv_handle_t *)&tick, NULL);
	h_pump(h, 2);
	return ready;
}

static void test_hello_deadline(void)
{
	struct broker_options o;
	struct harness h;
	struct tclient good;
	int idle;
	uint8_t b;

	mmn__broker_options_default(&o);
	o.hello_timeout_ms = 50;
	h_init(&h, &o);
	idle = tc_connect_raw(&h);
	h_require(tc_hello(&h, &good) == 0);
	tap_ok(wait_readable(&h, idle), "hello deadline: the idle connection hears from mmnd");
	tap_ok(got_error_eof(&h, idle, -ETIMEDOUT, "Hello"),
	       "hello deadline: Error -ETIMEDOUT saying no Hello came, then EOF");
	tap_ok(mmn__broker_nclients(h.b) == 1, "hello deadline: only the idle one was dropped");
	tap_ok(recv(good.fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN,
	       "hello deadline: the client that said Hello is untouched");
	tap_ok(tc_subscribe(&h, &good, A, 0x1000, false, 0, NULL) != 0, "hello deadline: and keeps working");
	close(idle);
	tc_close(&good);
	tap_ok(h_fini(&h) == 0, "hello deadline: loop closes clean");
}

int main(void)
{
	test_connections();
	test_subscriptions();
	test_hello_deadline();
	return tap_done();
}
