/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "admin/bus-uv.h"
#include "log.h"

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_poll(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *h);

/* The connection is gone (bus daemon stopped): log once and stop driving it. */
static void bus_lost(struct bus_uv *u, int r)
{
	mmn__log(LOG_ERR, NULL, "Lost the D-Bus connection, the admin API is unavailable: %s", strerror(-r));
	u->dead = true;
	uv_poll_stop(&u->poll);
	uv_timer_stop(&u->timer);
	uv_prepare_stop(&u->prepare);
}

static void rearm(struct bus_uv *u)
{
	uint64_t until, now;
	int ev, want = 0, r;

	ev = sd_bus_get_events(u->sd);
	if (ev < 0) {
		bus_lost(u, ev);
		return;
	}
	if (ev & POLLIN)
		want |= UV_READABLE;
	if (ev & POLLOUT)
		want |= UV_WRITABLE;
	if (want != u->armed) {
		r = want ? uv_poll_start(&u->poll, want, on_poll) : uv_poll_stop(&u->poll);
		if (r < 0) {
			bus_lost(u, r);
			return;
		}
		u->armed = want;
	}

	/* An absolute CLOCK_MONOTONIC time in usec, UINT64_MAX for none. */
	r = sd_bus_get_timeout(u->sd, &until);
	if (r < 0 || until == UINT64_MAX) {
		uv_timer_stop(&u->timer);
		return;
	}
	now = now_usec();
	uv_timer_start(&u->timer, on_timer, until > now ? (until - now + 999) / 1000 : 0, 0);
}

static void dispatch(struct bus_uv *u)
{
	int r;

	do
		r = sd_bus_process(u->sd, NULL);
	while (r > 0);
	if (r < 0) {
		bus_lost(u, r);
		return;
	}
	rearm(u);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct bus_uv *u = h->data;

	if (status < 0) {
		bus_lost(u, status);
		return;
	}
	dispatch(u);
}

static void on_timer(uv_timer_t *h)
{
	dispatch(h->data);
}

/* Before the loop blocks: signals emitted since may need POLLOUT. */
static void on_prepare(uv_prepare_t *h)
{
	struct bus_uv *u = h->data;

	if (!u->dead)
		rearm(u);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct bus_uv *u = h->data;

	if (--u->open_handles == 0 && u->closed)
		u->closed(u);
}

int mmn__bus_uv_attach(struct bus_uv *u, uv_loop_t *loop, sd_bus *sd, void (*closed)(struct bus_uv *u))
{
	int r;

	*u = (struct bus_uv){.sd = sd, .closed = closed};
	r = uv_poll_init(loop, &u->poll, sd_bus_get_fd(sd));
	if (r < 0)
		return r;
	u->poll.data = u;
	uv_timer_init(loop, &u->timer);
	u->timer.data = u;
	uv_prepare_init(loop, &u->prepare);
	u->prepare.data = u;
	u->open_handles = 3;
	uv_prepare_start(&u->prepare, on_prepare);
	/* The poll and timer keep the loop alive when needed, the prepare never. */
	uv_unref((uv_handle_t *)&u->prepare);
	/* Messages may already be queued (the name request was synchronous). */
	dispatch(u);
	return 0;
}

void mmn__bus_uv_detach(struct bus_uv *u)
{
	u->dead = true;
	u->sd = NULL;
	uv_close((uv_handle_t *)&u->poll, on_handle_closed);
	uv_close((uv_handle_t *)&u->timer, on_handle_closed);
	uv_close((uv_handle_t *)&u->prepare, on_handle_closed);
}
