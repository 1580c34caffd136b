/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * In-process harness for broker tests: a broker with the test source on a
 * private loop, listening on a socket in a temporary directory, and raw
 * protocol clients in the same process.  Nothing sleeps: helpers drive the
 * loop with uv_run(UV_RUN_NOWAIT) until the expected packet is there, and
 * deadlines are waited for with uv_run(UV_RUN_ONCE), measured by the loop.
 */
#ifndef MMN_TESTS_DAEMON_HARNESS_H
#define MMN_TESTS_DAEMON_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "admin.h"
#include "broker.h"
#include "seqpage.h"
#include "source.h"
#include "tap.h"
#include "wire.h"

/* Like tap_require, but silent when it holds: setup steps are not test points. */
#define h_require(cond)                                                                                      \
	do {                                                                                                 \
		if (!(cond))                                                                                 \
			tap_require(cond);                                                                   \
	} while (0)

struct harness {
	uv_loop_t loop;
	struct broker *b;
	struct source *src;
	char dir[64];
	char path[108];
};

struct tclient {
	int fd;
	uint64_t id;
	struct mmn_seqpage *page;
	size_t page_size;
	uint32_t nslots;
	uint64_t next_rid;
};

static inline void h_init(struct harness *h, const struct broker_options *o)
{
	int r;

	signal(SIGPIPE, SIG_IGN);
	strcpy(h->dir, "/tmp/mmn-test-XXXXXX");
	h_require(mkdtemp(h->dir) != NULL);
	snprintf(h->path, sizeof(h->path), "%s/mmnd.sock", h->dir);
	h_require(uv_loop_init(&h->loop) == 0);
	h_require(mmn__source_test_new(&h->loop, NULL, NULL, &h->src) == 0);
	r = mmn__broker_new(&h->loop, h->src, o, &h->b);
	h_require(r == 0);
	h_require(mmn__broker_listen_path(h->b, h->path) == 0);
}

static inline void h_pump(struct harness *h, int n)
{
	for (int i = 0; i < n; i++)
		uv_run(&h->loop, UV_RUN_NOWAIT);
}

/* Free the broker, run the close callbacks, close the loop: 0 when nothing leaked. */
static inline int h_fini(struct harness *h)
{
	mmn__broker_free(h->b);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	rmdir(h->dir);
	return uv_loop_close(&h->loop);
}

static inline int tc_connect_raw(struct harness *h)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	h_require(fd >= 0);
	strcpy(sa.sun_path, h->path);
	h_require(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	h_pump(h, 2);
	return fd;
}

/* Receive one packet, driving the loop until it arrives; NULL if none came. */
static inline MmnEnvelope *tc_recv_fd(struct harness *h, int fd, int *rfd)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fds[MMN_WIRE_MAX_FDS];

	for (int i = 0; i < 200; i++) {
		size_t nfds = 0;
		ssize_t n = mmn__wire_recv(fd, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds);
		MmnEnvelope *env;

		if (n > 0) {
			if (rfd)
				*rfd = nfds ? fds[0] : -1;
			else
				for (size_t k = 0; k < nfds; k++)
					close(fds[k]);
			if (mmn__wire_decode(buf, (size_t)n, &env) < 0)
				return NULL;
			return env;
		}
		if (n == 0)
			return NULL; /* EOF */
		uv_run(&h->loop, UV_RUN_NOWAIT);
	}
	return NULL;
}

static inline MmnEnvelope *tc_recv(struct harness *h, struct tclient *c)
{
	return tc_recv_fd(h, c->fd, NULL);
}

/* True when the peer closed (EOF) after draining what is queued. */
static inline bool tc_eof(struct harness *h, int fd)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];

	for (int i = 0; i < 200; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0)
			return true;
		if (n < 0 && errno != EAGAIN)
			return true;
		if (n < 0)
			uv_run(&h->loop, UV_RUN_NOWAIT);
	}
	return false;
}

/* Nothing is queued for the client after the loop settled. */
static inline bool tc_quiet(struct harness *h, struct tclient *c)
{
	uint8_t b;

	h_pump(h, 5);
	return recv(c->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

static inline int tc_send(struct tclient *c, MmnEnvelope *env)
{
	return mmn__wire_send(c->fd, env, NULL, 0, 0);
}

static inline int tc_hello(struct harness *h, struct tclient *c)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep;
	int memfd = -1;

	memset(c, 0, sizeof(*c));
	c->fd = tc_connect_raw(h);
	hello.version_min = 1;
	hello.version_max = 1;
	hello.client_name = (char *)"test";
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	if (tc_send(c, &env) < 0)
		return -EIO;
	rep = tc_recv_fd(h, c->fd, &memfd);
	if (!rep || rep->body_case != MMN__V1__ENVELOPE__BODY_HELLO_REPLY || memfd < 0) {
		mmn__wire_free(rep);
		return -EPROTO;
	}
	c->id = rep->hello_reply->client_id;
	c->nslots = rep->hello_reply->seqpage_slots;
	c->page_size = MMN_SEQPAGE_SIZE(c->nslots);
	c->page = mmap(NULL, c->page_size, PROT_READ, MAP_SHARED, memfd, 0);
	close(memfd);
	mmn__wire_free(rep);
	return c->page == MAP_FAILED ? -errno : 0;
}

static inline void tc_close(struct tclient *c)
{
	if (c->page && c->page != MAP_FAILED)
		munmap(c->page, c->page_size);
	c->page = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Subscribe; returns the reply (SubscribeReply or Error) to free. */
static inline MmnEnvelope *tc_subscribe_req(struct harness *h, struct tclient *c, int32_t pid, uint64_t start,
					    uint64_t length, uint32_t flags, uint32_t timeout_ms)
{
	Mmn__V1__Subscribe s = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	s.pid = pid;
	s.start = start;
	s.length = length;
	s.flags = flags;
	s.ack_timeout_ms = timeout_ms;
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &s;
	if (tc_send(c, &env) < 0)
		return NULL;
	return tc_recv(h, c);
}

/* Subscribe to own memory; returns the sub id (0 on failure), slot in *slot. */
static inline uint64_t tc_subscribe(struct harness *h, struct tclient *c, uint64_t start, uint64_t length,
				    bool blocking, uint32_t timeout_ms, uint32_t *slot)
{
	MmnEnvelope *rep = tc_subscribe_req(
		h, c, 0, start, length,
		blocking ? MMN__V1__SUB_FLAG__SUB_BLOCKING : MMN__V1__SUB_FLAG__SUB_NONBLOCKING, timeout_ms);
	uint64_t id = 0;

	if (rep && rep->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY) {
		id = rep->subscribe_reply->sub_id;
		if (slot)
			*slot = rep->subscribe_reply->seq_slot;
	}
	mmn__wire_free(rep);
	return id;
}

static inline int tc_ack(struct tclient *c, uint64_t sub_id, uint64_t event_id)
{
	Mmn__V1__Ack a = MMN__V1__ACK__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	a.sub_id = sub_id;
	a.event_id = event_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK;
	env.ack = &a;
	return tc_send(c, &env);
}

static inline int tc_unsubscribe_send(struct tclient *c, uint64_t sub_id)
{
	Mmn__V1__Unsubscribe u = MMN__V1__UNSUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	u.sub_id = sub_id;
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE;
	env.unsubscribe = &u;
	return tc_send(c, &env);
}

static inline uint32_t tc_seq(const struct tclient *c, uint32_t slot)
{
	return MMN_SEQ_WORD(mmn_seqpage_load(&c->page->slots[slot]));
}

#endif
