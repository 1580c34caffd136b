/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The engine's way out: how engine/ reaches the clients, set by the broker
 * (broker.c) when it is created, the mirror of source->emit.  Files under
 * engine/ never call into clients/ or broker.c by name, so no file calls
 * back into the file that called it.  Loop thread only.
 */
#ifndef MMN_DAEMON_SINK_H
#define MMN_DAEMON_SINK_H

#include <stdint.h>

#include "wire.h"

struct client;
struct sub;

struct engine_sink {
	/* Send @env (request_id set by the caller) to @c; queued when its socket is full. */
	int (*send)(struct client *c, MmnEnvelope *env);
	/*
	 * Send an Invalidate/InvalidateEnd of non-blocking sub @s: coalesced
	 * while @c's queue overflows.  1 when coalesced (not sent), else as send.
	 */
	int (*send_nb)(struct client *c, struct sub *s, MmnEnvelope *env);
	/* Send an Error answering @request_id; returns @err. */
	int (*send_error)(struct client *c, uint64_t request_id, int err, const char *msg);
	/* Send Revoked{@sub_id, @reason, @event_id (0: none)} to @c. */
	int (*send_revoked)(struct client *c, uint64_t sub_id, uint32_t reason, uint64_t event_id);
	/* Read what @c has queued now (before evicting it at a deadline). */
	void (*read_now)(struct client *c);
};

#endif
