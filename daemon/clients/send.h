/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outgoing side of a client connection (see send.c).  Loop thread only.
 */
#ifndef MMN_DAEMON_SEND_H
#define MMN_DAEMON_SEND_H

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

struct sub_batch_item;
struct sub_result;

/*
 * Records in a v2 client's first EventBatch of a loop iteration; later ones
 * hold MMN_EVENT_BATCH_MAX.  A client woken for a large fan-out starts on
 * the short first packet while mmnd builds the rest.
 */
#define MMN_EVENT_BATCH_FIRST 8

struct broker;
struct client;
struct sub;

/* Send @env (request_id set by the caller).  Queues when the socket is full. */
int mmn__client_send(struct client *c, MmnEnvelope *env);
int mmn__client_send_error(struct client *c, uint64_t request_id, int err, const char *msg);
/*
 * Send an Invalidate of sub @s.  With @nonblocking, while the queue is
 * overflowing it is coalesced into one whole-range pair per sub, sent when
 * the queue drains: returns 1 then (not sent), else as above.
 */
int mmn__client_send_invalidate(struct client *c, struct sub *s, uint64_t sub_id, uint64_t event_id,
				uint64_t start, uint64_t end, uint32_t event, bool blockable, bool needs_ack,
				uint64_t seq, uint32_t deadline_ms, bool nonblocking);
/* Send InvalidateEnd{@sub_id, @event_id, @seq}. */
int mmn__client_send_invalidate_end(struct client *c, uint64_t sub_id, uint64_t event_id, uint64_t seq);
/* Send Status{@err} answering @request_id. */
int mmn__client_send_status(struct client *c, uint64_t request_id, int err);
/* Send SubscribeReply of @res answering @request_id. */
int mmn__client_send_subscribed(struct client *c, uint64_t request_id, const struct sub_result *res);
/* Send Release{@sub_id}. */
/* One SubscribeManyReply for the results of @items (n <= MMN_MAX_BATCH). */
int mmn__client_send_subscribed_many(struct client *c, uint64_t request_id, const struct sub_batch_item *items,
				     uint32_t n);
int mmn__client_send_unsubscribed_many(struct client *c, uint64_t request_id, const int32_t *errors, uint32_t n);
int mmn__client_send_release(struct client *c, uint64_t sub_id);
/* Send Revoked{@sub_id, @reason, @event_id (0: none)}: @c loses that subscription. */
int mmn__client_send_revoked(struct client *c, uint64_t sub_id, uint32_t reason, uint64_t event_id);
/* A protocol violation: Error to the client, count it, drop it. */
void mmn__client_protocol_error(struct client *c, uint64_t request_id, int err, const char *msg);
/* Queue the client for dropping at settle (never frees in place). */
void mmn__client_drop(struct client *c, int error);
/* Poll @c for @events (UV_READABLE, UV_WRITABLE, UV_DISCONNECT). */
void mmn__client_set_poll(struct client *c, int events);
/* Send every client's batched event records (before the loop polls). */
void mmn__client_send_batches(struct broker *b);
/* @c's socket is writable: send what is queued; once drained, the coalesced pairs. */
void mmn__client_flush(struct client *c);

#endif
