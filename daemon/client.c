/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Client connections: a SOCK_SEQPACKET socket each, polled with uv_poll
 * (libuv's uv_pipe reads streams and cannot keep packet boundaries with
 * SCM_RIGHTS).  One packet is one Envelope (proto/wire.h).
 *
 * Receiving decodes into a per-broker arena, so the ack path does not
 * allocate.  Sending is non-blocking; a full socket queues packets, and a
 * queue at max_queued coalesces the non-blocking events of that client
 * into one whole-range pair per subscription (sent once it drains).  A
 * client whose queue grows past four times the limit with messages that
 * cannot be coalesced is dropped (-ENOBUFS).
 *
 * A client is never freed in place: mmn__client_drop() queues it and
 * mmn__client_reap() (from broker_settle) kills its subscriptions (its
 * pending acks count as done), closes its handle and frees it from the
 * close callback.
 */
#include "broker-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define RECV_BATCH 64

static void poll_cb(uv_poll_t *h, int status, int events);

static void *arena_alloc(void *ud, size_t size)
{
	struct broker *b = ud;
	void *p;

	size = (size + 15) & ~(size_t)15;
	if (size > sizeof(b->arena) - b->arena_used)
		return NULL;
	p = b->arena + b->arena_used;
	b->arena_used += size;
	return p;
}

static void arena_free(void *ud, void *p)
{
}

static void set_poll(struct client *c, int events)
{
	if (c->closed || c->dropping || events == c->poll_events)
		return;
	c->poll_events = events;
	uv_poll_start(&c->poll, events, poll_cb);
}

int mmn__client_accept(struct broker *b, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *c;
	int pidfd = -1, r;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	len = sizeof(pidfd);
	/* The peer's pidfd from the socket (6.5+) cannot name a recycled pid. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
		pidfd = mmn__pidfd_open(cred.pid);
		if (pidfd < 0)
			pidfd = -1;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (pidfd >= 0)
			close(pidfd);
		close(fd);
		return -ENOMEM;
	}
	c->b = b;
	c->fd = fd;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pidfd = pidfd;
	c->memfd = -1;
	c->id = ++b->next_client_id;
	list_init(&c->subs);
	list_init(&c->pending);
	list_init(&c->shares);
	list_init(&c->outq);
	r = uv_poll_init(b->loop, &c->poll, fd);
	if (r < 0) {
		if (pidfd >= 0)
			close(pidfd);
		close(fd);
		free(c);
		return r;
	}
	c->poll.data = c;
	b->handles++;
	list_add_tail(&b->clients, &c->link);
	b->nclients++;
	b->stats.clients++;
	set_poll(c, UV_READABLE | UV_DISCONNECT);
	return 0;
}

static int send_raw(struct client *c, const uint8_t *buf, size_t len)
{
	ssize_t n;

	do
		n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int queue_packet(struct client *c, const uint8_t *buf, size_t len, uint64_t sub_id, uint32_t kind)
{
	struct outmsg *m;

	if (c->nqueued >= 4 * c->b->opt.max_queued) {
		mmn__client_drop(c, -ENOBUFS);
		return -ENOBUFS;
	}
	m = malloc(sizeof(*m) + len);
	if (!m) {
		mmn__client_drop(c, -ENOMEM);
		return -ENOMEM;
	}
	m->sub_id = sub_id;
	m->kind = kind;
	m->len = (uint32_t)len;
	memcpy(m->data, buf, len);
	list_add_tail(&c->outq, &m->link);
	c->nqueued++;
	set_poll(c, UV_READABLE | UV_WRITABLE | UV_DISCONNECT);
	return 0;
}

static int send_env(struct client *c, MmnEnvelope *env, uint64_t sub_id)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int len, r;

	if (!c || c->dropping || c->closed)
		return -ENOTCONN;
	len = mmn__wire_encode(env, buf, sizeof(buf));
	if (len < 0)
		return len;
	if (list_empty(&c->outq)) {
		r = send_raw(c, buf, (size_t)len);
		if (r == 0)
			return 0;
		if (r != -EAGAIN && r != -ENOBUFS) {
			mmn__client_drop(c, r);
			return r;
		}
	}
	return queue_packet(c, buf, (size_t)len, sub_id, env->body_case);
}

int mmn__client_send(struct client *c, MmnEnvelope *env)
{
	return send_env(c, env, 0);
}

int mmn__client_send_nb(struct client *c, struct sub *s, MmnEnvelope *env)
{
	struct broker *b = c->b;

	if (!c->coalescing && c->nqueued >= b->opt.max_queued) {
		c->coalescing = true;
		b->stats.queue_overflows++;
		if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
			mmn__log(LOG_WARNING, NULL,
				 "Client %" PRIu64 " (pid %d) is not reading; coalescing its events", c->id,
				 (int)c->pid);
	}
	if (c->coalescing) {
		s->resync = true;
		return 1;
	}
	return send_env(c, env, s->id);
}

/* The queue drained: deliver one whole-range pair per coalesced sub. */
static void flush_resync(struct client *c)
{
	c->coalescing = false;
	list_for_each(pos, &c->subs)
	{
		struct sub *s = list_entry(pos, struct sub, clink);
		Mmn__V1__Invalidate inv = MMN__V1__INVALIDATE__INIT;
		Mmn__V1__InvalidateEnd end = MMN__V1__INVALIDATE_END__INIT;
		MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

		if (!s->resync)
			continue;
		s->resync = false;
		inv.sub_id = s->id;
		inv.start = s->start;
		inv.end = s->end;
		inv.event = MMN__V1__EVENT_TYPE__EVENT_RESYNC;
		inv.seq = mmn__seqpage_value(c, s->slot);
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE;
		env.invalidate = &inv;
		send_env(c, &env, s->id);
		end.sub_id = s->id;
		end.seq = inv.seq;
		env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
		env.invalidate_end = &end;
		send_env(c, &env, s->id);
	}
}

static void flush_queue(struct client *c)
{
	while (!list_empty(&c->outq)) {
		struct outmsg *m = list_entry(c->outq.next, struct outmsg, link);
		int r = send_raw(c, m->data, m->len);

		if (r == -EAGAIN || r == -ENOBUFS)
			return;
		if (r < 0) {
			mmn__client_drop(c, r);
			return;
		}
		list_del(&m->link);
		c->nqueued--;
		free(m);
	}
	set_poll(c, UV_READABLE | UV_DISCONNECT);
	if (c->coalescing)
		flush_resync(c);
}

int mmn__client_send_error(struct client *c, uint64_t request_id, int err, const char *msg)
{
	Mmn__V1__Error e = MMN__V1__ERROR__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	e.error = err;
	e.message = (char *)(msg ? msg : "");
	env.request_id = request_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_ERROR;
	env.error = &e;
	mmn__client_send(c, &env);
	return err;
}

void mmn__client_protocol_error(struct client *c, uint64_t request_id, int err, const char *msg)
{
	struct broker *b = c->b;

	if (c->dropping)
		return;
	b->stats.protocol_errors++;
	if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log(LOG_NOTICE, NULL,
			 "Client %" PRIu64 " (pid %d) sent a bad message (%s): %s; dropping it", c->id,
			 (int)c->pid, strerror(-err), msg);
	mmn__client_send_error(c, request_id, err, msg);
	mmn__client_drop(c, err);
}

void mmn__client_drop(struct client *c, int error)
{
	if (c->dropping)
		return;
	c->dropping = true;
	c->drop_error = error;
	if (!c->closed)
		uv_poll_stop(&c->poll);
	list_del(&c->link);
	list_add_tail(&c->b->reap, &c->link);
}

static void close_cb(uv_handle_t *h)
{
	struct client *c = h->data;
	struct broker *b = c->b;

	close(c->fd);
	free(c);
	mmn__broker_handle_closed(b);
}

static void client_destroy(struct client *c)
{
	struct broker *b = c->b;

	while (!list_empty(&c->pending))
		mmn__pending_sub_cancel(list_entry(c->pending.next, struct pending_sub, clink));
	while (!list_empty(&c->subs))
		mmn__sub_kill(list_entry(c->subs.next, struct sub, clink));
	mmn__share_free_all(c);
	if (c->uffd_attached && b->src->ops->detach_uffd && !b->source_lost)
		b->src->ops->detach_uffd(b->src, c->pid, c->id);
	while (!list_empty(&c->outq)) {
		struct outmsg *m = list_entry(c->outq.next, struct outmsg, link);

		list_del(&m->link);
		free(m);
	}
	mmn__seqpage_destroy(c);
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	b->nclients--;
	b->stats.clients--;
	if (c->hello) {
		if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
			mmn__log(LOG_INFO, MMN_MSGID_CLIENT_DETACH,
				 "Client %" PRIu64 " (pid %d, %s) detached%s%s", c->id, (int)c->pid,
				 c->name[0] ? c->name : "unnamed", c->drop_error ? ": " : "",
				 c->drop_error ? strerror(-c->drop_error) : "");
		if (b->has_obs && b->obs.client_disconnected)
			b->obs.client_disconnected(b->obs.ud, c->id);
	}
	c->closed = true;
	uv_close((uv_handle_t *)&c->poll, close_cb);
}

void mmn__client_reap(struct broker *b)
{
	bool reaped = false;

	while (!list_empty(&b->reap)) {
		struct client *c = list_entry(b->reap.next, struct client, link);

		list_del(&c->link);
		client_destroy(c);
		reaped = true;
	}
	/*
	 * mmnd's memory is locked: give freed heap back after clients leave,
	 * at most once a second so a disconnect storm does not trim per client.
	 */
	if (reaped && (b->nclients == 0 || uv_now(b->loop) - b->last_trim >= 1000)) {
		b->last_trim = uv_now(b->loop);
		malloc_trim(0);
	}
}

void mmn__client_free_all(struct broker *b)
{
	list_for_each_safe(pos, &b->clients)
		mmn__client_drop(list_entry(pos, struct client, link), -ESHUTDOWN);
	mmn__client_reap(b);
}

static void handle_packet(struct client *c, const uint8_t *buf, size_t len, int *fds, size_t nfds)
{
	struct broker *b = c->b;
	ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = b};
	MmnEnvelope *env;

	b->arena_used = 0;
	env = mmn__v1__envelope__unpack(&a, len, buf);
	if (!env) {
		mmn__client_protocol_error(c, 0, -EBADMSG, "malformed message");
		return;
	}
	if (env->body_case == MMN__V1__ENVELOPE__BODY__NOT_SET) {
		mmn__client_protocol_error(c, env->request_id, -EPROTO, "unknown message");
		return;
	}
	mmn__rpc_dispatch(c, env, fds, nfds);
	b->arena_used = 0;
}

static void read_packets(struct client *c)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fds[MMN_WIRE_MAX_FDS];

	for (int i = 0; i < RECV_BATCH && !c->dropping; i++) {
		size_t nfds = 0;
		ssize_t n = mmn__wire_recv(c->fd, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds);

		if (n == -EAGAIN)
			return;
		if (n == -EMSGSIZE) {
			mmn__client_protocol_error(c, 0, -EMSGSIZE, "message too large");
			return;
		}
		if (n < 0) {
			mmn__client_drop(c, (int)n);
			return;
		}
		if (n == 0) {
			mmn__client_drop(c, 0);
			return;
		}
		handle_packet(c, buf, (size_t)n, fds, nfds);
		/* Descriptors the message did not take. */
		for (size_t k = 0; k < nfds; k++)
			if (fds[k] >= 0)
				close(fds[k]);
	}
}

void mmn__client_read_now(struct client *c)
{
	if (!c->dropping && !c->closed)
		read_packets(c);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct client *c = h->data;
	struct broker *b = c->b;

	if (status < 0) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		/*
		 * libuv reports EPOLLERR/EPOLLHUP as UV_EBADF and stops the handle.
		 * A peer that simply closed still has its last packets (an Ack,
		 * say) and EOF queued: read them, so the drop is orderly.
		 */
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
			for (int i = 0; i < 64 && !c->dropping && !c->closed; i++)
				read_packets(c);
		if (!c->dropping && !c->closed)
			mmn__client_drop(c, soerr ? -soerr : status);
	} else {
		if (events & UV_WRITABLE)
			flush_queue(c);
		if (events & (UV_READABLE | UV_DISCONNECT))
			read_packets(c);
	}
	mmn__broker_settle(b);
}
