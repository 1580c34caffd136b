/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drive an sd-bus connection from a libuv loop, the way sd-event would: a
 * uv_poll on sd_bus_get_fd() for the events sd_bus_get_events() asks for, a
 * uv_timer for sd_bus_get_timeout(), and sd_bus_process() until it returns
 * 0 whenever either fires.  A uv_prepare re-arms both before the loop
 * blocks, because messages queued from outside a bus callback (signals the
 * broker emits) may need POLLOUT.
 *
 * Loop thread only; no lock.  The caller owns @sd; detach closes the
 * handles and calls @closed once the last one is closed (run the loop).
 */
#ifndef MMN_DAEMON_BUS_UV_H
#define MMN_DAEMON_BUS_UV_H

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <uv.h>

struct bus_uv {
	sd_bus *sd;
	uv_poll_t poll;
	uv_timer_t timer;
	uv_prepare_t prepare;
	int armed;	  /* UV_READABLE/UV_WRITABLE currently polled */
	int open_handles; /* @closed runs when this drops to 0 after detach */
	bool dead;	  /* connection lost (or detached): stop driving it */
	void (*closed)(struct bus_uv *u);
};

/* Start driving @sd on @loop.  0 or a negative errno (nothing to undo then). */
int mmn__bus_uv_attach(struct bus_uv *u, uv_loop_t *loop, sd_bus *sd, void (*closed)(struct bus_uv *u));
/* Stop; @closed follows from the handles' close callbacks. */
void mmn__bus_uv_detach(struct bus_uv *u);

#endif
