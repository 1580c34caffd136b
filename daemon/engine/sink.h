/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The engine's way out: how engine/ reaches the clients, set by the broker
 * (broker.c) when it is created, the mirror of source->emit.  Files under
 * engine/ never call into clients/ or broker.c by name, so no file calls
 * back into the file that called it.  Loop thread only.
 */
#ifndef MMN_DAEMON_SINK_H
#define MMN_DAEMON_SINK_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct sub;
struct sub_batch_item;
struct sub_result;

struct engine_sink {
	/*
	 * Every envelope the engine sends is built by one of these (clients/
	 * send.c); each is queued when @c's socket is full.  0 or -errno.
	 *
	 * Send Invalidate{@sub_id, @event_id, [@start, @end), @event, @blockable,
	 * @needs_ack, @seq, @deadline_ms} of sub @s.  With @nonblocking (a
	 * non-blocking sub's event) it is coalesced while @c's queue overflows:
	 * returns 1 then (not sent; @s gets a whole-range pair once it drains).
	 */
	int (*send_invalidate)(struct client *c, struct sub *s, uint64_t sub_id, uint64_t event_id,
			       uint64_t start, uint64_t end, uint32_t event, bool blockable, bool needs_ack,
			       uint64_t seq, uint32_t deadline_ms, bool nonblocking);
	/* Send InvalidateEnd{@sub_id, @event_id (0: a resync pair), @seq}. */
	int (*send_invalidate_end)(struct client *c, uint64_t sub_id, uint64_t event_id, uint64_t seq);
	/* Send Status{@err} answering @request_id. */
	int (*send_status)(struct client *c, uint64_t request_id, int err);
	/* Send SubscribeReply{@res's sub_id, slot, gen, ack timeout} answering @request_id. */
	int (*send_subscribed)(struct client *c, uint64_t request_id, const struct sub_result *res);
	/* Send SubscribeManyReply{results} answering @request_id: one per item's res. */
	int (*send_subscribed_many)(struct client *c, uint64_t request_id, const struct sub_batch_item *items,
				    uint32_t n);
	/* Send UnsubscribeManyReply{@errors} answering @request_id. */
	int (*send_unsubscribed_many)(struct client *c, uint64_t request_id, const int32_t *errors, uint32_t n);
	/* Send Release{@sub_id}: the source is done with that subscription. */
	int (*send_release)(struct client *c, uint64_t sub_id);
	/* Send an Error answering @request_id; returns @err. */
	int (*send_error)(struct client *c, uint64_t request_id, int err, const char *msg);
	/* Send Revoked{@sub_id, @reason, @event_id (0: none)} to @c. */
	int (*send_revoked)(struct client *c, uint64_t sub_id, uint32_t reason, uint64_t event_id);
	/* Read what @c has queued now (before evicting it at a deadline). */
	void (*read_now)(struct client *c);
};

#endif
