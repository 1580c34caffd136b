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

#include "ack-ring.h"
#include "admin.h"
#include "broker.h"
#include "event-record.h"
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
	uint32_t version; /* negotiated; 2: events come as EventBatch records */
	bool ack_runs;	  /* HelloReply.ack_runs: AckMany may carry runs */
	bool no_end;	  /* set by the test: its next Subscribes say no_end */
	/* The rest of the last EventBatch, as v1 messages (tc_recv() hands them out in order). */
	MmnEnvelope *held[2 * MMN_EVENT_BATCH_MAX];
	unsigned nheld, iheld;
	uint64_t batches, records, folded; /* EventBatch packets, records, INVALIDATE_END records */
	/* HelloReply.ack_ring (tc_hello_ring()): the ring and its doorbell, else NULL and -1. */
	struct mmn_ack_ring *ring;
	int doorbell;
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

/* One record as the v1 message it stands for (@end: the InvalidateEnd of a folded one), or NULL. */
static inline MmnEnvelope *tc_record_msg(const struct mmn_event_record *r, bool end)
{
	Mmn__V1__Invalidate inv = MMN__V1__INVALIDATE__INIT;
	Mmn__V1__InvalidateEnd ie = MMN__V1__INVALIDATE_END__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *out = NULL;
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int n;

	if (end || r->kind == MMN_RECORD_END) {
		ie.sub_id = r->sub_id;
		ie.event_id = r->event_id;
		ie.seq = end ? r->end_seq : r->seq;
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
		env.invalidate_end = &ie;
	} else {
		inv.sub_id = r->sub_id;
		inv.event_id = r->event_id;
		inv.start = r->start;
		inv.end = r->end;
		inv.event = r->event;
		inv.blockable = r->flags & MMN_RECORD_BLOCKABLE;
		inv.needs_ack = r->flags & MMN_RECORD_NEEDS_ACK;
		inv.seq = r->seq;
		inv.deadline_ms = r->deadline_ms;
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE;
		env.invalidate = &inv;
	}
	n = mmn__wire_encode(&env, buf, sizeof(buf));
	if (n < 0 || mmn__wire_decode(buf, (size_t)n, &out) < 0)
		return NULL;
	return out;
}

/*
 * Take @m: an EventBatch becomes the v1 messages its records stand for, held
 * in @c and handed out by tc_recv(); anything else is returned as it is.
 * NULL for a malformed batch (the checks libmmn makes).
 */
static inline MmnEnvelope *tc_unbatch(struct tclient *c, MmnEnvelope *m)
{
	size_t len, n;

	if (!m || m->body_case != MMN__V1__ENVELOPE__BODY_EVENT_BATCH)
		return m;
	len = m->event_batch->records.len;
	n = len / sizeof(struct mmn_event_record);
	c->nheld = c->iheld = 0;
	if (c->version < 2 || !n || n > MMN_EVENT_BATCH_MAX || len % sizeof(struct mmn_event_record)) {
		mmn__wire_free(m);
		return NULL;
	}
	c->batches++;
	c->records += n;
	for (size_t i = 0; i < n; i++) {
		struct mmn_event_record r;

		memcpy(&r, m->event_batch->records.data + i * sizeof(r), sizeof(r));
		if (r.kind < MMN_RECORD_INVALIDATE || r.kind > MMN_RECORD_INVALIDATE_END || r.reserved ||
		    (r.flags & ~MMN_RECORD_FLAGS))
			break;
		c->held[c->nheld++] = tc_record_msg(&r, false);
		if (r.kind == MMN_RECORD_INVALIDATE_END) {
			c->folded++;
			c->held[c->nheld++] = tc_record_msg(&r, true);
		}
	}
	mmn__wire_free(m);
	return c->nheld ? c->held[c->iheld++] : NULL;
}

static inline MmnEnvelope *tc_recv(struct harness *h, struct tclient *c)
{
	if (c->iheld < c->nheld)
		return c->held[c->iheld++];
	return tc_unbatch(c, tc_recv_fd(h, c->fd, NULL));
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

/* What HelloReply @r tells @c, and its sequence page @memfd mapped (and closed): 0 or -errno. */
static inline int tc_take_reply(struct tclient *c, const Mmn__V1__HelloReply *r, int memfd)
{
	c->id = r->client_id;
	c->version = r->version;
	c->ack_runs = r->ack_runs;
	c->nslots = r->seqpage_slots;
	c->page_size = MMN_SEQPAGE_SIZE(c->nslots);
	c->page = mmap(NULL, c->page_size, PROT_READ, MAP_SHARED, memfd, 0);
	close(memfd);
	return c->page == MAP_FAILED ? -errno : 0;
}

/* Connect and say Hello offering protocol versions 1..@version, and AckMany runs if @ack_runs. */
static inline int tc_hello_runs(struct harness *h, struct tclient *c, uint32_t version, bool ack_runs)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep;
	int memfd = -1, r;

	memset(c, 0, sizeof(*c));
	c->doorbell = -1;
	c->fd = tc_connect_raw(h);
	hello.version_min = 1;
	hello.version_max = version;
	hello.client_name = (char *)"test";
	hello.ack_runs = ack_runs;
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
	r = tc_take_reply(c, rep->hello_reply, memfd);
	mmn__wire_free(rep);
	return r;
}

static inline int tc_hello_v(struct harness *h, struct tclient *c, uint32_t version)
{
	return tc_hello_runs(h, c, version, false);
}

static inline int tc_hello(struct harness *h, struct tclient *c)
{
	return tc_hello_v(h, c, 1);
}

/*
 * Connect and say Hello v2 with AckMany runs and the ack ring; the ring is
 * mapped into @c.  0, or -EPROTO when the reply does not carry a ring.
 */
static inline int tc_hello_ring(struct harness *h, struct tclient *c)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep = NULL;
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fds[MMN_WIRE_MAX_FDS];
	size_t nfds = 0;
	ssize_t n = -EAGAIN;
	int r;

	memset(c, 0, sizeof(*c));
	c->doorbell = -1;
	c->fd = tc_connect_raw(h);
	hello.version_min = 1;
	hello.version_max = 2;
	hello.ack_runs = true;
	hello.ack_ring = true;
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	if (tc_send(c, &env) < 0)
		return -EIO;
	for (int i = 0; i < 200 && n == -EAGAIN; i++) {
		uv_run(&h->loop, UV_RUN_NOWAIT);
		n = mmn__wire_recv(c->fd, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds);
	}
	if (n <= 0 || mmn__wire_decode(buf, (size_t)n, &rep) < 0 ||
	    rep->body_case != MMN__V1__ENVELOPE__BODY_HELLO_REPLY || !rep->hello_reply->ack_ring ||
	    nfds != 3) {
		for (size_t k = 0; k < nfds; k++)
			close(fds[k]);
		mmn__wire_free(rep);
		return -EPROTO;
	}
	r = tc_take_reply(c, rep->hello_reply, fds[0]);
	mmn__wire_free(rep);
	c->ring = mmap(NULL, MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES), PROT_READ | PROT_WRITE, MAP_SHARED,
		       fds[1], 0);
	c->doorbell = fds[2];
	close(fds[1]);
	if (c->ring == MAP_FAILED)
		c->ring = NULL;
	return r < 0 ? r : c->ring ? 0 : -ENOMEM;
}

/* Put one entry in @c's ring, publish it, and ring the doorbell if @ring. */
static inline void tc_ring_ack(struct tclient *c, uint64_t sub_id, uint64_t event_id, uint32_t run, bool ring)
{
	uint32_t head = c->ring->head;
	const uint64_t one = 1;

	c->ring->e[head % MMN_ACK_RING_ENTRIES] =
		(struct mmn_ack_entry){.sub_id = sub_id, .event_id = event_id, .run = run};
	__atomic_store_n(&c->ring->head, head + 1, __ATOMIC_RELEASE);
	if (ring)
		h_require(write(c->doorbell, &one, sizeof(one)) == sizeof(one));
}

static inline void tc_close(struct tclient *c)
{
	if (c->ring)
		munmap(c->ring, MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES));
	c->ring = NULL;
	if (c->doorbell > 0) /* 0: a tclient zeroed by a test, never a doorbell */
		close(c->doorbell);
	c->doorbell = -1;
	while (c->iheld < c->nheld)
		mmn__wire_free(c->held[c->iheld++]);
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
	s.no_end = c->no_end;
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

/* One AckMany entry: @run Invalidates of @event_id from @sub_id's on (a 0 run: no runs list). */
static inline int tc_ack_run(struct tclient *c, uint64_t sub_id, uint64_t event_id, uint32_t run)
{
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	am.n_sub_ids = am.n_event_ids = 1;
	am.sub_ids = &sub_id;
	am.event_ids = &event_id;
	am.n_runs = 1;
	am.runs = &run;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK_MANY;
	env.ack_many = &am;
	return tc_send(c, &env);
}

/* Ack (a v2 client: an AckMany of one). */
static inline int tc_ack(struct tclient *c, uint64_t sub_id, uint64_t event_id)
{
	Mmn__V1__Ack a = MMN__V1__ACK__INIT;
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if (c->version >= 2) {
		am.n_sub_ids = am.n_event_ids = 1;
		am.sub_ids = &sub_id;
		am.event_ids = &event_id;
		env.body_case = MMN__V1__ENVELOPE__BODY_ACK_MANY;
		env.ack_many = &am;
		return tc_send(c, &env);
	}
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
