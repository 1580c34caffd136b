/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection to mmnd: opening the socket and sending Hello, sending,
 * reading and decoding one packet into the client's pre-faulted arena (no
 * malloc on the dispatch path), dropping the connection and reconnecting
 * with backoff.  All under c->lock.  The meaning of the packets lives in
 * session.c, reached only through c->conn_ops.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "ackring.h"
#include "client.h"
#include "conn.h"
#include "queue.h"
#include "error.h"
#include "eventfd.h"
#include "fork.h"
#include "mmn/mmn.h"

static int send_now(struct mmn_client *c, const MmnEnvelope *env, const int *fds, size_t nfds)
{
	int r;

	if (c->sock < 0)
		return -ENOTCONN;
	r = mmn__wire_send(c->sock, env, fds, nfds, 0);
	if (r < 0)
		mmn__log(LOG_DEBUG, "mmn: sending %s failed: %s", mmn__wire_body_name(env), mmn_strerror(r));
	return r;
}

/* Send the batched acks (not the open run) as one AckMany.  0 or -errno. */
static int send_acks(struct mmn_client *c)
{
	Mmn__V1__AckMany m = MMN__V1__ACK_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if (!c->nacks)
		return 0;
	if (mmn__ackring_put(c, c->ack_sub, c->ack_event, c->ack_runs ? c->ack_run : NULL, c->nacks) == 0) {
		c->nacks = 0;
		c->ack_waited = 0;
		c->ack_held_since = 0;
		return 0;
	}
	m.n_sub_ids = m.n_event_ids = c->nacks;
	m.sub_ids = c->ack_sub;
	m.event_ids = c->ack_event;
	if (c->ack_runs) {
		m.n_runs = c->nacks;
		m.runs = c->ack_run;
	}
	c->nacks = 0;
	c->ack_waited = 0;
	c->ack_held_since = 0;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK_MANY;
	env.ack_many = &m;
	return send_now(c, &env, NULL, 0);
}

/* One more entry of the batched acks (sending a full batch first).  0 or -errno. */
static int ack_push(struct mmn_client *c, uint64_t sub_id, uint64_t event_id, uint32_t n)
{
	if (c->nacks == (c->ack_runs ? MMN_MAX_ACK_RUNS : MMN_MAX_ACKS)) {
		int r = send_acks(c);

		if (r < 0)
			return r;
	}
	c->ack_sub[c->nacks] = sub_id;
	c->ack_event[c->nacks] = event_id;
	c->ack_run[c->nacks] = n;
	c->nacks++;
	return 0;
}

/* The open run, if it acks anything, becomes an entry of the batched acks. */
static int run_close(struct mmn_client *c)
{
	struct ack_run *run = &c->run;

	if (!run->open)
		return 0;
	run->open = false;
	return run->needed ? ack_push(c, run->sub_id, run->event_id, run->next - run->first) : 0;
}

int mmn__conn_flush_acks(struct mmn_client *c)
{
	int r = run_close(c);

	return r < 0 ? r : send_acks(c);
}

bool mmn__conn_acks_waiting(const struct mmn_client *c)
{
	return c->nacks || (c->run.open && c->run.needed);
}

bool mmn__conn_run_goes_on(const struct mmn_client *c, const struct qev *next)
{
	const struct ack_run *run = &c->run;

	return !c->nacks && run->open && next->type == QEV_INVALIDATE &&
	       next->conn == (uint32_t)c->conn_gen && next->r.event_id == run->event_id &&
	       next->ord >= run->next;
}

int mmn__conn_send(struct mmn_client *c, const MmnEnvelope *env, const int *fds, size_t nfds)
{
	int r = mmn__conn_flush_acks(c);

	return r < 0 ? r : send_now(c, env, fds, nfds);
}

int mmn__conn_ack(struct mmn_client *c, uint64_t sub_id, uint64_t event_id, bool batch)
{
	Mmn__V1__Ack a = MMN__V1__ACK__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if ((batch || c->ackring) && c->version >= 2) {
		int r = run_close(c); /* acks keep their order */

		if (r == 0)
			r = ack_push(c, sub_id, event_id, 1);
		/* Not batched: now, through the ring when there is one (allocating nothing). */
		return r < 0 || batch ? r : send_acks(c);
	}
	a.sub_id = sub_id;
	a.event_id = event_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_ACK;
	env.ack = &a;
	return mmn__conn_send(c, &env, NULL, 0);
}

int mmn__conn_ack_delivered(struct mmn_client *c, uint64_t sub_id, const struct qev *e)
{
	struct ack_run *run = &c->run;
	const struct mmn_range *r = &e->r;
	int ret;

	if (!c->ack_runs || e->conn != (uint32_t)c->conn_gen)
		return r->needs_ack ? mmn__conn_ack(c, sub_id, r->event_id, true) : 0;
	if (run->open && run->event_id == r->event_id && e->ord >= run->next) {
		/* Places skipped were Invalidates of subs removed meanwhile: acked already. */
		run->next = e->ord + 1;
		run->needed |= r->needs_ack;
		return 0;
	}
	ret = run_close(c);
	*run = (struct ack_run){.sub_id = sub_id,
				.event_id = r->event_id,
				.first = e->ord,
				.next = e->ord + 1,
				.open = true,
				.needed = r->needs_ack};
	return ret;
}

int mmn__conn_ack_break(struct mmn_client *c)
{
	return run_close(c);
}

static void arm_timer(struct mmn_client *c, unsigned ms)
{
	struct itimerspec its = {0};

	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L + 1;
	timerfd_settime(c->timerfd, 0, &its, NULL);
}

/* A connected, blocking (bounded) socket in c->epfd, or a negative errno. */
static int socket_open(struct mmn_client *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct epoll_event ev = {.events = EPOLLIN};
	struct timeval tv = {.tv_sec = 2};
	int fd, r;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, c->path, sizeof(c->path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r == -EAGAIN ? -ECONNREFUSED : r;
	}
	/* Sends block (bounded): an ack must not be dropped because the queue is full. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ev.data.fd = fd;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int mmn__conn_open(struct mmn_client *c)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int fd, r;

	fd = socket_open(c);
	if (fd < 0)
		return fd;
	mmn__global_set_fd(&c->sock, fd);

	hello.version_min = MMN_PROTO_VERSION_MIN;
	hello.version_max = MMN_PROTO_VERSION;
	hello.client_name = (char *)"libmmn";
	hello.waiter_flag = true; /* seq.c raises a slot's flag before it sleeps on it */
	hello.gen_base = (uint64_t)c->gen_max + 1; /* no gen this client saw again (mmn.h) */
	hello.ack_ring = true;			   /* acks go through shared memory (ackring.h) */
	hello.ack_runs = true;			   /* dispatch.c acks delivered Invalidates in runs */
	env.request_id = c->hello_req = ++c->next_req;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	c->state = CONN_HELLO;
	r = mmn__conn_send(c, &env, NULL, 0);
	if (r < 0) {
		/*
		 * EPIPE, ECONNRESET: mmnd may have refused us (Error{-EUSERS},
		 * -ESHUTDOWN) and closed; its reason is still queued: read it
		 * (mmn__conn_read_packet drops the connection with it) before
		 * giving up.
		 */
		while (c->state == CONN_HELLO && mmn__conn_read_packet(c) > 0)
			;
		mmn__conn_lost(c, r);
		if (c->initial && c->connect_err)
			r = c->connect_err;
	}
	return r;
}

void mmn__conn_set_connected(struct mmn_client *c)
{
	c->state = CONN_CONNECTED;
	c->backoff_ms = MMN_BACKOFF_MIN_MS;
}

/*
 * The connection is gone (EOF, error, malformed input).  The layer above
 * (c->conn_ops->lost) detaches readers and ends what was delivered; here the
 * socket goes and, outside mmn_connect(), the backoff timer is armed.
 */
void mmn__conn_lost(struct mmn_client *c, int err)
{
	if (c->state == CONN_DOWN)
		return;
	mmn__log(LOG_INFO, "mmn: connection to %s lost: %s", c->path, mmn_strerror(err));
	if (c->sock >= 0) {
		int fd = c->sock;

		epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
		mmn__global_set_fd(&c->sock, -1);
		close(fd);
	}
	mmn__conn_discard_rx(c); /* that daemon's packets, read but not handled */
	mmn__ackring_unmap(c);
	c->conn_gen++;
	c->nacks = c->ack_waited = 0; /* nothing of that daemon waits for them */
	c->ack_held_since = 0;
	c->run.open = false;
	c->rx_event = 0;
	c->rx_ord = 0;
	c->state = CONN_DOWN;
	c->conn_ops->lost(c, err);
	if (c->initial) {
		c->connect_err = err;
		return;
	}
	c->pending_error = err;
	arm_timer(c, c->backoff_ms);
}

void mmn__conn_timer(struct mmn_client *c)
{
	uint64_t n;
	int r;

	if (read(c->timerfd, &n, sizeof(n)) != sizeof(n) || c->state != CONN_DOWN)
		return;
	r = mmn__conn_open(c);
	if (r < 0) {
		mmn__log(LOG_DEBUG, "mmn: reconnecting to %s: %s", c->path, mmn_strerror(r));
		c->backoff_ms *= 2;
		if (c->backoff_ms > MMN_BACKOFF_MAX_MS)
			c->backoff_ms = MMN_BACKOFF_MAX_MS;
		c->state = CONN_DOWN;
		arm_timer(c, c->backoff_ms);
	}
}

/* protobuf-c allocator over c->arena: a bump allocator reset after every packet. */
static void *arena_alloc(void *data, size_t size)
{
	struct mmn_client *c = data;
	size_t at = (c->arena_used + 15) & ~(size_t)15;

	if (size > sizeof(c->arena) || at > sizeof(c->arena) - size)
		return NULL;
	c->arena_used = at + size;
	return c->arena + at;
}

static void arena_free(void *data, void *ptr)
{
}

static bool body_known(const MmnEnvelope *env)
{
	return env->body_case >= MMN__V1__ENVELOPE__BODY_HELLO &&
	       env->body_case <= MMN__V1__ENVELOPE__BODY_ACK_MANY;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void mmn__conn_discard_rx(struct mmn_client *c)
{
	for (unsigned i = c->rx_next; i < c->rx_n; i++)
		close_fds(c->rx[i].fds, c->rx[i].nfds);
	c->rx_next = c->rx_n = 0;
}

bool mmn__conn_rx_pending(const struct mmn_client *c)
{
	return c->rx_next < c->rx_n;
}

/*
 * The next packet: one read before and not handled yet, or the first of
 * what one recvmmsg() reads now.  NULL with *@err 0 when nothing is queued,
 * or a negative errno.
 */
static struct mmn_wire_packet *next_packet(struct mmn_client *c, ssize_t *err)
{
	ssize_t n;

	*err = 0;
	if (c->rx_next < c->rx_n)
		return &c->rx[c->rx_next++];
	n = mmn__wire_recv_many(c->sock, c->rx, MMN_WIRE_RECV_MANY);
	if (n < 0 && n != -EAGAIN && n != -EINTR && c->state == CONN_HELLO) {
		/*
		 * A socket error (ECONNRESET: mmnd closed with our Hello unread)
		 * is reported, once, before the packets still queued, such as
		 * the Error mmnd refused us with: read that, it says why.
		 */
		ssize_t again = mmn__wire_recv_many(c->sock, c->rx, MMN_WIRE_RECV_MANY);

		if (again > 0)
			n = again;
	}
	if (n <= 0) {
		*err = n == -EAGAIN || n == -EINTR ? 0 : n;
		return NULL;
	}
	c->rx_n = (unsigned)n;
	c->rx_next = 1;
	return &c->rx[0];
}

int mmn__conn_read_packet(struct mmn_client *c)
{
	ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = c};
	struct mmn_wire_packet *p;
	MmnEnvelope *env;
	ssize_t n;
	int r;

	if (c->sock < 0 || c->state == CONN_DOWN)
		return 0;
	p = next_packet(c, &n);
	if (!p && !n)
		return 0;
	if (p)
		n = p->len; /* its descriptors are closed already unless n > 0 */
	if (n <= 0) {
		r = n == 0 ? -ECONNRESET : (int)n;
		goto lost;
	}
	c->arena_used = 0;
	env = mmn__v1__envelope__unpack(&alloc, (size_t)n, p->buf);
	if (!env) {
		r = -EBADMSG;
	} else if (!body_known(env)) {
		r = -EPROTO;
	} else {
		r = c->conn_ops->packet(c, env, p->fds, p->nfds);
	}
	close_fds(p->fds, p->nfds);
	p->nfds = 0;
	if (r >= 0) {
		/* The socket no longer says so: whoever reads next must be told (as mmn__enqueue() does). */
		if (mmn__conn_rx_pending(c) && !c->dispatching)
			mmn__eventfd_raise(c->wakefd, &c->wake_set);
		return 1;
	}
lost:
	mmn__log(LOG_WARNING, "mmn: dropping the connection: %s", mmn_strerror(r));
	mmn__conn_lost(c, r);
	return r;
}
