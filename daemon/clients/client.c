/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Client connections: a SOCK_SEQPACKET socket each, polled with uv_poll
 * (libuv's uv_pipe reads streams and cannot keep packet boundaries with
 * SCM_RIGHTS).  One packet is one Envelope (proto/wire.h).
 *
 * Receiving decodes into a per-broker arena, so the ack path does not
 * allocate.  The sending side is send.c.
 *
 * A client is never freed in place: mmn__client_drop() queues it and
 * mmn__client_reap() (from broker_settle) kills its subscriptions (its
 * pending acks count as done), closes its handle and frees it from the
 * close callback.
 */

#include "clients/client.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker-internal.h"
#include "clients/ackring.h"
#include "clients/rpc.h"
#include "clients/send.h"
#include "engine/seqpage-slots.h"
#include "clients/share.h"
#include "engine/list.h"
#include "engine/pidfd.h"
#include "engine/sub.h"

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

/* Refuse a connection: Error{@err, @msg}, then close (no client object exists). */
static void refuse(int fd, int err, const char *msg)
{
	Mmn__V1__Error e = MMN__V1__ERROR__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	e.error = err;
	e.message = (char *)msg;
	env.body_case = MMN__V1__ENVELOPE__BODY_ERROR;
	env.error = &e;
	mmn__wire_send(fd, &env, NULL, 0, 1);
	close(fd);
}

static struct uid_acct **uid_slot(struct broker *b, uid_t uid)
{
	struct uid_acct **pp = &b->uhash[(uint32_t)uid % UHASH_SIZE];

	while (*pp && (*pp)->uid != uid)
		pp = &(*pp)->next;
	return pp;
}

/* Root and mmnd's own uid are trusted with any number of connections (see broker.h). */
static bool uid_limited(const struct broker *b, uid_t uid)
{
	return b->opt.limit_privileged || (uid != 0 && uid != geteuid());
}

/* Connections @uid may hold: its own cap, never every slot (another uid can connect). */
static uint32_t uid_conn_cap(const struct broker *b)
{
	uint32_t cap = b->opt.max_clients_per_uid;

	if (b->opt.max_clients > 1 && cap > b->opt.max_clients - 1)
		cap = b->opt.max_clients - 1;
	return cap;
}

/*
 * The limits, checked with the peer's credentials before anything is
 * allocated for it: 0 and the uid's account (created if new), or the
 * connection was refused (Error sent, @fd closed) and a negative errno.
 */
static int admit(struct broker *b, int fd, const struct ucred *cred, bool limited, struct uid_acct **out)
{
	struct uid_acct **pp = uid_slot(b, cred->uid);
	char msg[96];

	if (b->draining) {
		refuse(fd, -ESHUTDOWN, "mmnd is stopping");
		return -ESHUTDOWN;
	}
	if (b->nclients >= b->opt.max_clients) {
		refuse(fd, -EUSERS, "too many clients");
		return -EUSERS;
	}
	if (limited && *pp && (*pp)->nclients >= uid_conn_cap(b)) {
		snprintf(msg, sizeof(msg), "too many connections from uid %u (at most %" PRIu32 ")",
			 (unsigned)cred->uid, uid_conn_cap(b));
		if (mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
			mmn__log_fields(LOG_NOTICE, NULL,
					&(struct log_fields){.has = LOG_F_CLIENT,
							     .client_pid = cred->pid,
							     .client_uid = cred->uid},
					"Refused a connection of pid %d: %s", (int)cred->pid, msg);
		refuse(fd, -EUSERS, msg);
		return -EUSERS;
	}
	if (!*pp) {
		*pp = calloc(1, sizeof(**pp));
		if (!*pp) {
			refuse(fd, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		(*pp)->uid = cred->uid;
	}
	*out = *pp;
	return 0;
}

static void uid_release(struct broker *b, struct uid_acct *a)
{
	struct uid_acct **pp;

	if (--a->nclients)
		return;
	pp = uid_slot(b, a->uid);
	*pp = a->next;
	free(a);
}

int mmn__client_accept(struct broker *b, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct uid_acct *acct;
	struct client *c;
	int pidfd = -1, r;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = admit(b, fd, &cred, uid_limited(b, cred.uid), &acct);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (!acct->nclients) {
			acct->nclients = 1;
			uid_release(b, acct);
		}
		refuse(fd, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	len = sizeof(pidfd);
	/* The peer's pidfd from the socket (6.5+) cannot name a recycled pid. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
		pidfd = mmn__pidfd_open(cred.pid);
		if (pidfd < 0)
			pidfd = -1;
	}
	c->b = b;
	c->fd = fd;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pidfd = pidfd;
	c->memfd = -1;
	c->acct = acct;
	c->limited = uid_limited(b, cred.uid);
	acct->nclients++;
	list_init(&c->subs);
	list_init(&c->pending);
	list_init(&c->shares);
	list_init(&c->outq);
	list_init(&c->hlink);
	list_init(&c->blink);
	r = uv_poll_init(b->loop, &c->poll, fd);
	if (r < 0) {
		if (pidfd >= 0)
			close(pidfd);
		uid_release(b, acct);
		close(fd);
		free(c);
		return r;
	}
	c->id = ++b->next_client_id;
	c->poll.data = c;
	b->handles++;
	list_add_tail(&b->clients, &c->link);
	b->nclients++;
	b->stats.clients++;
	c->accepted_at = uv_now(b->loop);
	list_add_tail(&b->unhello, &c->hlink);
	if (b->unhello.next == &c->hlink)
		mmn__client_hello_rearm(b);
	/* send.c switches the events later, keeping this callback */
	c->poll_events = UV_READABLE | UV_DISCONNECT;
	uv_poll_start(&c->poll, c->poll_events, poll_cb);
	return 0;
}

static void hello_timer_cb(uv_timer_t *h)
{
	struct broker *b = h->data;
	uint64_t now = uv_now(b->loop);
	char msg[64];

	while (!list_empty(&b->unhello)) {
		struct client *c = list_entry(b->unhello.next, struct client, hlink);

		if (c->accepted_at + b->opt.hello_timeout_ms > now)
			break;
		/* A Hello that arrived in this loop iteration still counts (timers run before I/O). */
		mmn__client_read_now(c);
		if (b->unhello.next != &c->hlink)
			continue; /* said Hello, or was dropped: off the list */
		snprintf(msg, sizeof(msg), "no Hello within %" PRIu32 " ms", b->opt.hello_timeout_ms);
		if (mmn__ratelimit_ok(&b->rl_client, now))
			mmn__log_fields(LOG_DEBUG, NULL, &CLIENT_FIELDS(c),
					"Connection %" PRIu64 " (pid %d, uid %u) sent %s; closing it", c->id,
					(int)c->pid, (unsigned)c->uid, msg);
		mmn__client_send_error(c, 0, -ETIMEDOUT, msg);
		mmn__client_drop(c, -ETIMEDOUT); /* unlinks it from unhello */
	}
	mmn__client_hello_rearm(b);
	b->settle(b);
}

void mmn__client_hello_rearm(struct broker *b)
{
	uint64_t now = uv_now(b->loop), due;
	struct client *c;

	if (list_empty(&b->unhello) || b->draining) {
		uv_timer_stop(&b->hello_timer);
		return;
	}
	c = list_entry(b->unhello.next, struct client, hlink);
	due = c->accepted_at + b->opt.hello_timeout_ms;
	uv_timer_start(&b->hello_timer, hello_timer_cb, due > now ? due - now : 0, 0);
}

static void close_cb(uv_handle_t *h)
{
	struct client *c = h->data;
	struct broker *b = c->b;

	close(c->fd);
	free(c);
	mmn__broker_handle_closed(b);
}

/*
 * A peer that closed its end is a plain disconnect, whether we then read
 * EOF (0), found our last packets unread (ECONNRESET) or wrote into the
 * closed socket (EPIPE): debug level.  Anything else says why it was dropped.
 */
static void log_detach(struct client *c)
{
	struct broker *b = c->b;
	int e = c->drop_error;
	bool hangup = e == 0 || e == -EPIPE || e == -ECONNRESET;

	if (hangup && mmn__log_get_level() >= LOG_DEBUG && mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log_fields(LOG_DEBUG, MMN_MSGID_CLIENT_DETACH, &CLIENT_FIELDS(c),
				"Client %" PRIu64 " (pid %d, %s) disconnected", c->id, (int)c->pid,
				c->name[0] ? c->name : "unnamed");
	else if (!hangup && mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
		mmn__log_fields(LOG_INFO, MMN_MSGID_CLIENT_DETACH, &CLIENT_FIELDS(c),
				"Client %" PRIu64 " (pid %d, %s) detached: %s", c->id, (int)c->pid,
				c->name[0] ? c->name : "unnamed", strerror(-e));
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
	list_del(&c->blink);
	free(c->batch);
	c->batch = NULL;
	c->nbatch = 0;
	c->nfoldable = 0;
	mmn__ackring_destroy(c);
	mmn__seqpage_destroy(c);
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	b->nclients--;
	b->stats.clients--;
	uid_release(b, c->acct);
	c->acct = NULL;
	if (c->hello) {
		log_detach(c);
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

/* Handle one received packet; false when @c is dropped because of it (or was already). */
static bool take_packet(struct client *c, struct mmn_wire_packet *p)
{
	if (p->len == -EMSGSIZE) {
		mmn__client_protocol_error(c, 0, -EMSGSIZE, "message too large");
		return false;
	}
	if (p->len == 0) {
		mmn__client_drop(c, 0);
		return false;
	}
	/* Acks @c put in its ring before it sent this packet come first. */
	mmn__ackring_take(c);
	if (!c->dropping)
		handle_packet(c, p->buf, (size_t)p->len, p->fds, p->nfds);
	/* Descriptors the message did not take. */
	for (size_t k = 0; k < p->nfds; k++)
		if (p->fds[k] >= 0)
			close(p->fds[k]);
	return !c->dropping;
}

/*
 * Read what @c has queued, RECV_BATCH packets at most (then the next loop
 * iteration goes on): one recvmmsg() per MMN_WIRE_RECV_MANY packets, and
 * none to learn that the queue is empty unless the last call filled them all.
 */
static void read_packets(struct client *c)
{
	struct mmn_wire_packet pkts[MMN_WIRE_RECV_MANY];

	for (int done = 0; done < RECV_BATCH && !c->dropping;) {
		ssize_t got = mmn__wire_recv_many(c->fd, pkts, MMN_WIRE_RECV_MANY);
		ssize_t i;

		if (got == -EAGAIN)
			return;
		if (got < 0) {
			mmn__client_drop(c, (int)got);
			return;
		}
		for (i = 0; i < got && take_packet(c, &pkts[i]); i++)
			;
		/* Packets after the one that dropped @c: close what they carried. */
		for (ssize_t k = i + 1; k < got; k++)
			for (size_t f = 0; f < pkts[k].nfds; f++)
				close(pkts[k].fds[f]);
		if (got < MMN_WIRE_RECV_MANY)
			return;
		done += (int)got;
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
			mmn__client_flush(c);
		if (events & (UV_READABLE | UV_DISCONNECT))
			read_packets(c);
	}
	b->settle(b);
}
