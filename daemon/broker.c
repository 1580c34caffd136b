/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The broker object: listeners, the source's event callback, settling
 * after every callback, drain and teardown.  See broker.h for the API and
 * broker-internal.h for object lifetimes.
 */

#include "broker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "clients/send.h"
#include "engine/fanout.h"
#include "engine/list.h"
#include "engine/sub.h"
#include "engine/target.h"
#include "options.h"

#define ACCEPT_BATCH 64

void mmn__broker_options_default(struct broker_options *o)
{
	*o = (struct broker_options){
		.ack_timeout_ms = MMN_BROKER_DEFAULT_ACK_TIMEOUT_MS,
		.ack_cap_ms = MMN_BROKER_DEFAULT_ACK_CAP_MS,
		.max_clients = MMN_BROKER_DEFAULT_MAX_CLIENTS,
		.max_subs = MMN_BROKER_DEFAULT_MAX_SUBS,
		.max_queued = MMN_BROKER_DEFAULT_MAX_QUEUED,
		.max_targets = MMN_BROKER_DEFAULT_MAX_TARGETS,
		.end_timeout_ms = MMN_BROKER_DEFAULT_END_TIMEOUT_MS,
		.max_clients_per_uid = MMN_BROKER_DEFAULT_MAX_CLIENTS_PER_UID,
		.max_subs_per_uid = MMN_BROKER_DEFAULT_MAX_SUBS_PER_UID,
		.hello_timeout_ms = MMN_BROKER_DEFAULT_HELLO_TIMEOUT_MS,
	};
}

int mmn__broker_options_explain(const struct broker_options *o, const char **why)
{
	/* One loop thread: a static buffer for the message is enough. */
	static char msg[128];
	size_t n;
	const struct broker_option_bound *bound = mmn__broker_option_bounds(&n);

	for (size_t i = 0; i < n; i++) {
		uint32_t v = *(const uint32_t *)((const char *)o + bound[i].off);

		if (mmn__option_check_u32(v, 1, bound[i].max) < 0) {
			snprintf(msg, sizeof(msg),
				 "%s is out of range: it must be between 1 and %" PRIu32 ", not %" PRIu32,
				 bound[i].name, bound[i].max, v);
			*why = msg;
			return -EINVAL;
		}
	}
	if (o->ack_timeout_ms > o->ack_cap_ms) {
		*why = "ack-timeout-ms must not exceed ack-cap-ms";
		return -EINVAL;
	}
	return 0;
}

int mmn__broker_options_check(const struct broker_options *o)
{
	const char *why;

	return mmn__broker_options_explain(o, &why);
}


/*
 * The end of every loop callback: ack the source for events that are done,
 * then drop the clients queued for it.  Dropping can settle more events, so
 * loop until both queues are empty.
 */
static void broker_settle(struct broker *b)
{
	while (!list_empty(&b->ack_queue) || !list_empty(&b->reap)) {
		mmn__fanout_flush_acks(b);
		mmn__client_reap(b);
	}
}

/*
 * Before the loop polls (every iteration, so before it can block): send the
 * event batches the callbacks since the last poll built.  Every event of one
 * source read, of one timer, of one client request shares the batch of
 * each client.  Sending can drop a client, whose events end (more records):
 * settle and send until nothing is left.
 */
static void batch_prepare_cb(uv_prepare_t *h)
{
	struct broker *b = h->data;

	while (!list_empty(&b->batched)) {
		mmn__client_send_batches(b);
		broker_settle(b);
	}
}

static void source_emit(const struct source_event *ev, void *userdata)
{
	struct broker *b = userdata;

	if (b->freed)
		return;
	mmn__fanout_event(b, ev);
	broker_settle(b);
}

static void broker_handle_close_cb(uv_handle_t *h)
{
	mmn__broker_handle_closed(h->data);
}

int mmn__broker_new(uv_loop_t *loop, struct source *src, const struct broker_options *o, struct broker **out)
{
	struct broker *b;
	int r;

	struct broker_options def;

	if (!o) {
		mmn__broker_options_default(&def);
		o = &def;
	}
	if (mmn__broker_options_check(o) < 0) {
		src->ops->destroy(src);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		src->ops->destroy(src);
		return -ENOMEM;
	}
	b->loop = loop;
	b->src = src;
	b->opt = *o;
	list_init(&b->listeners);
	list_init(&b->clients);
	list_init(&b->reap);
	list_init(&b->batched);
	list_init(&b->targets);
	list_init(&b->events);
	list_init(&b->event_pool);
	list_init(&b->ack_queue);
	list_init(&b->unhello);
	b->rl_client = (struct ratelimit)RATELIMIT_INIT(10000, 20);
	b->batch_gen = 1; /* a new client's 0 differs: its first packet is short */
	src->emit = source_emit;
	src->userdata = b;
	b->sink = (struct engine_sink){
		.send_invalidate = mmn__client_send_invalidate,
		.send_invalidate_end = mmn__client_send_invalidate_end,
		.send_status = mmn__client_send_status,
		.send_subscribed = mmn__client_send_subscribed,
		.send_subscribed_many = mmn__client_send_subscribed_many,
		.send_unsubscribed_many = mmn__client_send_unsubscribed_many,
		.send_release = mmn__client_send_release,
		.send_error = mmn__client_send_error,
		.send_revoked = mmn__client_send_revoked,
		.read_now = mmn__client_read_now,
	};
	b->settle = broker_settle;
	r = src->ops->start(src);
	if (r < 0) {
		src->ops->destroy(src);
		free(b);
		return r;
	}
	uv_timer_init(loop, &b->hello_timer);
	b->hello_timer.data = b;
	b->handles++;
	/* Runs every iteration but keeps no loop alive. */
	uv_prepare_init(loop, &b->batch_prepare);
	b->batch_prepare.data = b;
	uv_prepare_start(&b->batch_prepare, batch_prepare_cb);
	uv_unref((uv_handle_t *)&b->batch_prepare);
	b->handles++;
	*out = b;
	return 0;
}

static void listener_cb(uv_poll_t *h, int status, int events)
{
	struct listener *l = h->data;
	struct broker *b = l->b;

	for (int i = 0; i < ACCEPT_BATCH && status == 0; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED &&
			    mmn__ratelimit_ok(&b->rl_client, uv_now(b->loop)))
				mmn__log(LOG_WARNING, NULL, "Failed to accept a connection: %s",
					 strerror(errno));
			break;
		}
		/* Limits (global and per uid) are checked there, with the peer's credentials. */
		mmn__client_accept(b, fd);
	}
	broker_settle(b);
}

int mmn__broker_listen_fd(struct broker *b, int fd)
{
	struct listener *l = calloc(1, sizeof(*l));
	int r;

	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	l->b = b;
	l->fd = fd;
	r = uv_poll_init(b->loop, &l->poll, fd);
	if (r < 0) {
		close(fd);
		free(l);
		return r;
	}
	l->poll.data = l;
	b->handles++;
	list_add_tail(&b->listeners, &l->link);
	return uv_poll_start(&l->poll, UV_READABLE, listener_cb);
}

/*
 * Make room for a socket at @path: either nothing is there, or a stale
 * socket nobody listens on (connect() refused), which is removed.  Anything
 * else is left alone: a file, directory or symlink (-ENOTSOCK; lstat()
 * never follows a symlink), or a socket something listens on (-EADDRINUSE).
 * unlink() itself never follows a symlink either, so even if the name is
 * swapped between the check and the unlink (only someone who may write
 * the directory can), what goes is a name, never the file it points to.
 */
static int clear_stale_socket(const struct sockaddr_un *sa, const char *path)
{
	struct stat st, again;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 0 : -errno;
	close(fd);
	if (r == -ENOENT)
		return 0; /* gone meanwhile */
	if (r == 0 || r == -EAGAIN || r == -EPROTOTYPE || r == -EINPROGRESS)
		return -EADDRINUSE; /* accepted, backlog full, or a listener of another type */
	if (r != -ECONNREFUSED)
		return r;
	if (lstat(path, &again) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(again.st_mode) || again.st_ino != st.st_ino || again.st_dev != st.st_dev)
		return -EADDRINUSE; /* replaced meanwhile: not the stale socket we probed */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/*
 * Bind @fd to @sa with mode 0666 (access is decided per request from the
 * peer's credentials).  The mode is set on the socket before bind(), which
 * creates the file with it (less the umask, cleared meanwhile: mmnd is
 * single-threaded here): nothing is ever changed by path afterwards, so a
 * name swapped for a symlink after bind() cannot redirect a chmod.
 */
static int bind_socket(int fd, const struct sockaddr_un *sa)
{
	mode_t old;
	int r;

	if (fchmod(fd, 0666) < 0)
		return -errno;
	old = umask(0);
	r = bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
	umask(old);
	return r;
}

int mmn__broker_listen_path(struct broker *b, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct listener *l;
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	r = clear_stale_socket(&sa, path);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = bind_socket(fd, &sa);
	if (r == 0 && lstat(path, &st) < 0)
		r = -errno;
	if (r == 0 && listen(fd, 128) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	r = mmn__broker_listen_fd(b, fd);
	if (r < 0) {
		unlink(path);
		return r;
	}
	l = list_entry(b->listeners.prev, struct listener, link);
	l->path = strdup(path);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

int mmn__broker_run(struct broker *b)
{
	return uv_run(b->loop, UV_RUN_DEFAULT);
}

static void send_shutdown(struct broker *b)
{
	/* A failed send moves the client to the reap list: iterate safely. */
	list_for_each_safe(pos, &b->clients)
	{
		struct client *c = list_entry(pos, struct client, link);

		list_for_each(sp, &c->subs)
		{
			struct sub *s = list_entry(sp, struct sub, clink);

			mmn__client_send_revoked(c, s->id, MMN__V1__REVOKE_REASON__REVOKE_SHUTDOWN, 0);
		}
	}
}

void mmn__broker_drain(struct broker *b)
{
	if (b->draining)
		return;
	b->draining = true;
	uv_timer_stop(&b->hello_timer);
	list_for_each(pos, &b->listeners)
	{
		struct listener *l = list_entry(pos, struct listener, link);

		uv_poll_stop(&l->poll);
	}
	/* Every pairing is closed by Revoked{shutdown}; the kernel is let go first. */
	mmn__fanout_ack_all(b);
	send_shutdown(b);
	mmn__client_free_all(b);
	broker_settle(b);
}

static void listener_close_cb(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct broker *b = l->b;

	close(l->fd);
	free(l);
	mmn__broker_handle_closed(b);
}

void mmn__broker_free(struct broker *b)
{
	if (!b)
		return;
	mmn__broker_drain(b);
	while (!list_empty(&b->listeners)) {
		struct listener *l = list_entry(b->listeners.next, struct listener, link);

		list_del(&l->link);
		if (l->path) {
			struct stat st;

			/* Only the socket we bound: never a file put there since. */
			if (lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
			    st.st_ino == l->ino)
				unlink(l->path);
			free(l->path);
			l->path = NULL;
		}
		uv_close((uv_handle_t *)&l->poll, listener_close_cb);
	}
	uv_close((uv_handle_t *)&b->hello_timer, broker_handle_close_cb);
	uv_close((uv_handle_t *)&b->batch_prepare, broker_handle_close_cb);
	/* Remaining events belong to no client now; their targets go with them. */
	mmn__fanout_free_pool(b);
	while (!list_empty(&b->targets)) {
		struct target *t = list_entry(b->targets.next, struct target, link);

		/* Deferred requests of dropped clients first, then the ksubs. */
		if (!list_empty(&t->deferred)) {
			struct deferred *d = list_entry(t->deferred.next, struct deferred, link);

			t->inflight = 0;
			list_del(&d->link);
			mmn__sub_apply_deferred(t, d);
			continue;
		}
		if (!t->ksubs.root)
			break; /* cannot happen: nothing else holds a target now */
		mmn__ksub_release(container_of(t->ksubs.root, struct ksub, node), false,
				  MMN__V1__REVOKE_REASON__REVOKE_SHUTDOWN);
	}
	b->src->ops->destroy(b->src);
	b->src = NULL;
	b->source_lost = true;
	mmn__idmap_free(&b->ksub_ids);
	mmn__idmap_free(&b->sub_ids);
	mmn__idmap_free(&b->event_ids);
	b->freed = true;
	if (b->handles == 0)
		free(b);
}

struct source *mmn__broker_source(struct broker *b)
{
	return b->src;
}

uv_loop_t *mmn__broker_loop(struct broker *b)
{
	return b->loop;
}

size_t mmn__broker_pending_events(struct broker *b)
{
	size_t n = 0;

	list_for_each(pos, &b->events)
	{
		struct event *e = list_entry(pos, struct event, link);

		if (!e->acked)
			n++;
	}
	return n;
}

size_t mmn__broker_nclients(struct broker *b)
{
	return b->nclients;
}
