/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client object of the public API: mmn_connect (allocation, the
 * descriptors mmn_get_fd() gathers, the Hello handshake on the caller's
 * thread), mmn_disconnect, mmn_get_fd, mmn_capabilities.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <syslog.h>
#include <unistd.h>

#include "ackring.h"
#include "client.h"
#include "conn.h"
#include "error.h"
#include "fork.h"
#include "memory.h"
#include "mmn/mmn.h"
#include "queue.h"
#include "seq.h"
#include "session.h"
#include "sub.h"
#include "thread.h"
#include "util.h"

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
/*
 * LeakSanitizer scans the heap, stacks and globals for pointers, not
 * anonymous mappings; the client state is one, and it holds the only
 * pointers to its handles (a tombstone, a handle whose owner dropped it
 * after unsubscribing from a callback).  Declare it a root, or every such
 * handle reads as leaked.
 */
#define client_root(c, len) __lsan_register_root_region((c), (len))
#define client_unroot(c, len) __lsan_unregister_root_region((c), (len))
#else
#define client_root(c, len) ((void)0)
#define client_unroot(c, len) ((void)0)
#endif

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

	/* The dispatch path must not fault (memory.h). */
	c = mmn__memory_map(len);
	if (!c)
		return NULL;
	c->map_len = len;
	client_root(c, len);
	c->epfd = c->sock = c->wakefd = c->timerfd = c->replyfd = c->stopfd = -1;
	c->sp_memfd = -1;
	c->ackring_doorbell = -1;
	c->backoff_ms = MMN_BACKOFF_MIN_MS;
	c->conn_ops = &mmn__session_ops;
	mmn__sub_hash_init(c);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->req_lock, NULL);
	pthread_cond_init(&c->cb_cond, NULL);
	return c;
}

static void client_free(struct mmn_client *c)
{
	int fds[] = {c->epfd, c->sock, c->wakefd, c->timerfd, c->replyfd, c->stopfd, c->sp_memfd};

	mmn__conn_discard_rx(c);
	mmn__ackring_unmap(c);
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	mmn__free_subs(c);
	mmn__seqpage_unmap_all(c);
	if (c->q)
		munmap(c->q, c->qmap_len);
	if (c->batch)
		munmap(c->batch, c->batch_len);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->req_lock);
	pthread_cond_destroy(&c->cb_cond);
	client_unroot(c, c->map_len);
	munmap(c, c->map_len);
}

/* Drive the handshake to CONN_CONNECTED on the caller's thread. */
static int handshake(struct mmn_client *c)
{
	int64_t deadline = mmn__now_ms() + MMN_REQ_TIMEOUT_MS;
	int r;

	pthread_mutex_lock(&c->lock);
	c->initial = true;
	r = mmn__conn_open(c);
	while (r >= 0 && c->state == CONN_HELLO) {
		struct pollfd p = {.fd = c->sock, .events = POLLIN};
		int64_t left = deadline - mmn__now_ms();

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
		while (c->state == CONN_HELLO && (r = mmn__conn_read_packet(c)) > 0)
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
