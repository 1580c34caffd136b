/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection to mmnd: mmn_connect/mmn_disconnect, the Hello handshake,
 * reconnection with backoff after mmnd went away, and fork handling.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/userfaultfd.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int mmn__send(struct mmn_client *c, const MmnEnvelope *env, const int *fds, size_t nfds)
{
	int r;

	if (c->sock < 0)
		return -ENOTCONN;
	r = mmn__wire_send(c->sock, env, fds, nfds, 0);
	if (r < 0)
		mmn__log(LOG_DEBUG, "mmn: sending %s failed: %s", mmn__wire_body_name(env), mmn_strerror(r));
	return r;
}

static void arm_timer(struct mmn_client *c, unsigned ms)
{
	struct itimerspec its = {0};

	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L + 1;
	timerfd_settime(c->timerfd, 0, &its, NULL);
}

/* Open the socket and send Hello: never blocks (a Unix connect() completes at once). */
static int conn_open(struct mmn_client *c)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
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
	mmn__global_set_fd(&c->sock, fd);

	hello.version_min = MMN_PROTO_VERSION;
	hello.version_max = MMN_PROTO_VERSION;
	hello.client_name = (char *)"libmmn";
	env.request_id = c->hello_req = ++c->next_req;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	c->state = CONN_HELLO;
	r = mmn__send(c, &env, NULL, 0);
	if (r < 0) {
		/*
		 * EPIPE, ECONNRESET: mmnd may have refused us (Error{-EUSERS},
		 * -ESHUTDOWN) and closed; its reason is still queued: read it
		 * (mmn__pump drops the connection with it) before giving up.
		 */
		while (c->state == CONN_HELLO && mmn__pump(c, true) > 0)
			;
		mmn__conn_lost(c, r);
		if (c->initial && c->connect_err)
			r = c->connect_err;
	}
	return r;
}

void mmn__set_connected(struct mmn_client *c)
{
	c->state = CONN_CONNECTED;
	c->backoff_ms = MMN_BACKOFF_MIN_MS;
}

/*
 * The connection is gone (EOF, error, malformed input).  Readers see a
 * collision from now on; every delivered invalidation gets its end; the
 * subscriptions are resubscribed after reconnecting.
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
	c->conn_gen++;
	mmn__seqpage_detach(c);
	c->state = CONN_DOWN;
	if (c->req_id) {
		c->rep.err = err;
		c->req_done = true;
		mmn__kick(c->replyfd);
	}
	/*
	 * No queue entry per sub (the queue must not grow here): mmn_dispatch()
	 * ends the delivered invalidations of every flagged sub once the events
	 * queued before the loss are delivered.
	 */
	for (struct mmn_sub *s = c->subs; s; s = s->next) {
		s->resub_req = 0;
		if (s->state == SUB_ACTIVE) {
			s->lost = true;
			c->lost_pending = true;
		}
	}
	if (c->lost_pending)
		mmn__kick(c->wakefd);
	if (c->initial) {
		c->connect_err = err;
		return;
	}
	c->pending_error = err;
	arm_timer(c, c->backoff_ms);
}

/* The backoff timer fired: try again, never blocking. */
void mmn__conn_timer(struct mmn_client *c)
{
	uint64_t n;
	int r;

	if (read(c->timerfd, &n, sizeof(n)) != sizeof(n) || c->state != CONN_DOWN)
		return;
	r = conn_open(c);
	if (r < 0) {
		mmn__log(LOG_DEBUG, "mmn: reconnecting to %s: %s", c->path, mmn_strerror(r));
		c->backoff_ms *= 2;
		if (c->backoff_ms > MMN_BACKOFF_MAX_MS)
			c->backoff_ms = MMN_BACKOFF_MAX_MS;
		c->state = CONN_DOWN;
		arm_timer(c, c->backoff_ms);
	}
}

static int resolve_path(struct mmn_client *c, const char *socket_path)
{
	const char *p = socket_path;

	if (!p) {
		p = secure_getenv(MMN_SOCKET_ENV);
		if (!p || !*p)
			p = MMN_DEFAULT_SOCKET;
	}
	if (!*p || strlen(p) >= sizeof(c->path))
		return -EINVAL;
	strcpy(c->path, p);
	return 0;
}

static int add_efd(struct mmn_client *c, int *where, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};

	if (fd < 0)
		return -errno;
	*where = fd;
	ev.data.fd = fd;
	return epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static struct mmn_client *client_alloc(void)
{
	size_t len = (sizeof(struct mmn_client) + 4095) & ~(size_t)4095;
	struct mmn_client *c;

	/* Pre-faulted and, where RLIMIT_MEMLOCK allows, locked: the dispatch path must not fault. */
	c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	if (mlock(c, len) < 0)
		mmn__log(LOG_DEBUG, "mmn: mlock of client state failed: %m");
	c->map_len = len;
	c->epfd = c->sock = c->wakefd = c->timerfd = c->replyfd = c->stopfd = -1;
	c->sp_memfd = -1;
	c->backoff_ms = MMN_BACKOFF_MIN_MS;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->req_lock, NULL);
	pthread_cond_init(&c->cb_cond, NULL);
	return c;
}

static void client_free(struct mmn_client *c)
{
	int fds[] = {c->epfd, c->sock, c->wakefd, c->timerfd, c->replyfd, c->stopfd, c->sp_memfd};

	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	mmn__free_subs(c);
	mmn__seqpage_unmap_all(c);
	if (c->q)
		munmap(c->q, c->qmap_len);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->req_lock);
	pthread_cond_destroy(&c->cb_cond);
	munmap(c, c->map_len);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drive the handshake to CONN_CONNECTED on the caller's thread. */
static int handshake(struct mmn_client *c)
{
	int64_t deadline = now_ms() + MMN_REQ_TIMEOUT_MS;
	int r;

	pthread_mutex_lock(&c->lock);
	c->initial = true;
	r = conn_open(c);
	while (r >= 0 && c->state == CONN_HELLO) {
		struct pollfd p = {.fd = c->sock, .events = POLLIN};
		int64_t left = deadline - now_ms();

		if (left <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		pthread_mutex_unlock(&c->lock);
		r = poll(&p, 1, (int)left);
		pthread_mutex_lock(&c->lock);
		if (r < 0) {
			r = errno == EINTR ? 0 : -errno;
			continue;
		}
		while (c->state == CONN_HELLO && (r = mmn__pump(c, true)) > 0)
			;
		if (c->state == CONN_DOWN)
			r = c->connect_err ? c->connect_err : -ECONNRESET;
	}
	if (r >= 0 && c->state != CONN_CONNECTED)
		r = c->connect_err ? c->connect_err : -ECONNRESET;
	c->initial = false;
	pthread_mutex_unlock(&c->lock);
	return r < 0 ? r : 0;
}

MMN_EXPORT int mmn_connect(const char *socket_path, struct mmn_client **out)
{
	struct mmn_client *c;
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	c = client_alloc();
	if (!c)
		return -ENOMEM;
	r = resolve_path(c, socket_path);
	if (r < 0)
		goto err;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0) {
		r = -errno;
		goto err;
	}
	r = add_efd(c, &c->wakefd, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (r >= 0)
		r = add_efd(c, &c->timerfd, timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	if (r < 0)
		goto err;
	c->replyfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->replyfd < 0) {
		r = -errno;
		goto err;
	}
	r = mmn__queue_grow(c);
	if (r < 0)
		goto err;
	mmn__global_add(c);
	r = handshake(c);
	if (r < 0) {
		mmn__global_del(c);
		goto err;
	}
	*out = c;
	return 0;
err:
	mmn__log(LOG_DEBUG, "mmn: connecting to %s failed: %s", c->path, mmn_strerror(r));
	client_free(c);
	return r;
}

MMN_EXPORT void mmn_disconnect(struct mmn_client *c)
{
	if (!c)
		return;
	if (!mmn__forked(c)) {
		bool in_cb;

		pthread_mutex_lock(&c->lock);
		in_cb = c->dispatching && pthread_equal(pthread_self(), c->disp_thread);
		pthread_mutex_unlock(&c->lock);
		if (in_cb || (c->thread_started && pthread_equal(pthread_self(), c->thread))) {
			mmn__log(LOG_ERR, "mmn: mmn_disconnect() called from a callback; ignored");
			return;
		}
		mmn__thread_stop(c);
	} else {
		/* The child has no library thread (its stack copy is freed) and no uffd. */
		c->thread_started = false;
		mmn__thread_stop(c);
	}
	mmn__global_del(c);
	client_free(c);
}

MMN_EXPORT int mmn_get_fd(struct mmn_client *c)
{
	if (!c)
		return -EINVAL;
	if (mmn__forked(c))
		return -ECHILD;
	return c->epfd;
}

MMN_EXPORT uint64_t mmn_capabilities(struct mmn_client *c)
{
	uint64_t caps;

	if (!c || mmn__forked(c))
		return 0;
	pthread_mutex_lock(&c->lock);
	caps = c->caps;
	pthread_mutex_unlock(&c->lock);
	return caps;
}

/*
 * Re-Subscribe every live sub after a reconnection (with the uffd source,
 * mmnd registers them leniently with the new uffd: resubscribe).
 */
static void resubscribe(struct mmn_client *c)
{
	const struct mmn_range whole = {.event = MMN_EVENT_RESYNC};
	bool pending = false;

	for (struct mmn_sub *s = c->subs; s; s = s->next) {
		struct mmn_range r = whole;
		int err = 0;

		if (s->state != SUB_ACTIVE)
			continue;
		r.start = s->start;
		r.end = s->end;
		if (c->needs_uffd && s->pid)
			err = -EOPNOTSUPP;
		if (!err) {
			s->resub_req = ++c->next_req;
			err = mmn__send_subscribe(c, s, s->resub_req, true);
			if (err < 0)
				return; /* mmn__pump drops the connection on the next read */
			pending = true;
			continue;
		}
		s->state = SUB_DEAD;
		mmn__seq_kill(s);
		mmn__enqueue(c, QEV_RESYNC_FAIL, s, &r, err);
	}
	if (!pending)
		mmn__set_connected(c);
	else
		c->state = CONN_RESUB;
}

int mmn__handle_hello_reply(struct mmn_client *c, const MmnEnvelope *env, int memfd)
{
	const Mmn__V1__HelloReply *h = env->hello_reply;
	Mmn__V1__AttachUffd a = MMN__V1__ATTACH_UFFD__INIT;
	MmnEnvelope out = MMN__V1__ENVELOPE__INIT;
	int r;

	if (h->version != MMN_PROTO_VERSION) {
		close(memfd);
		return -EPROTONOSUPPORT;
	}
	r = mmn__seqpage_map(c, memfd, h->seqpage_slots);
	if (r < 0) {
		if (c->sp_memfd != memfd)
			close(memfd);
		return r;
	}
	c->caps = h->event_mask & ((1ull << (MMN_EVENT_RESYNC + 1)) - 1);
	if (h->acks_hold_kernel)
		c->caps |= MMN_CAP_ACKS_HOLD_KERNEL;
	if (h->events_before_change)
		c->caps |= MMN_CAP_EVENTS_BEFORE_CHANGE;
	if (h->needs_uffd)
		c->caps |= MMN_CAP_SELF_ONLY;
	c->caps |= 1ull << MMN_EVENT_RESYNC; /* the library's own */
	c->needs_uffd = h->needs_uffd;
	c->default_ack_timeout_ms = h->default_ack_timeout_ms;
	c->client_id = h->client_id;
	snprintf(c->source, sizeof(c->source), "%s", h->source ? h->source : "");
	if (c->needs_uffd && !h->registers_uffd) {
		/* An mmnd from before registration moved into it: it would watch nothing. */
		mmn__log(LOG_ERR,
			 "mmn: mmnd does not register userfaultfd ranges (restart it after the upgrade)");
		return -EPROTONOSUPPORT;
	}
	if (c->needs_uffd) {
		int fd = mmn__uffd_open(c);

		if (fd < 0)
			return fd;
		if (!(c->uffd_features & UFFD_FEATURE_EVENT_FORK))
			c->caps &= ~(1ull << MMN_EVENT_PROTECTION_PAGE);
		a.features = c->uffd_features;
		out.body_case = MMN__V1__ENVELOPE__BODY_ATTACH_UFFD;
		out.attach_uffd = &a;
		r = mmn__send(c, &out, &fd, 1);
		/* mmnd holds the only descriptor from now on (see uffd.c). */
		close(fd);
		if (r < 0)
			return r;
	}
	resubscribe(c);
	return 0;
}
