/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection to mmnd (conn.c): the socket, the Hello, reconnection with
 * backoff, and reading one packet at a time.  All under c->lock.  What the
 * packets mean is not known here: each decoded packet, and the loss of the
 * connection, is handed to c->conn_ops, set by the layer above.
 */
#ifndef MMN_CLIENT_CONN_H
#define MMN_CLIENT_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "wire.h"

struct qev;

struct mmn_client;

struct conn_ops {
	/*
	 * One decoded packet with the descriptors it carried.  Returns >= 0, or
	 * a negative errno to drop the connection.  The callee takes a
	 * descriptor it keeps (the memfd of an accepted HelloReply) by setting
	 * its slot to -1; the caller closes every other one, whatever the
	 * callee returns.
	 */
	int (*packet)(struct mmn_client *c, const MmnEnvelope *env, int *fds, size_t nfds);
	/* The connection is gone (c->state is CONN_DOWN already), for @err. */
	void (*lost)(struct mmn_client *c, int err);
};

/* Open the socket and send Hello (c->state becomes CONN_HELLO); never blocks. */
int mmn__conn_open(struct mmn_client *c);
/* HelloReply handled and nothing pending: CONN_CONNECTED, backoff reset. */
void mmn__conn_set_connected(struct mmn_client *c);
/* Send @env (after the batched acks, so order is kept).  0 or -errno. */
int mmn__conn_send(struct mmn_client *c, const MmnEnvelope *env, const int *fds, size_t nfds);
/*
 * Ack @event_id of @sub_id.  With @batch on a v2 connection the ack waits in
 * c->ack_sub/ack_event for mmn__conn_flush_acks() (or the next send); else
 * it is sent now (with the acks batched before it, through the ack ring
 * when the connection has one).  0 or -errno.
 */
int mmn__conn_ack(struct mmn_client *c, uint64_t sub_id, uint64_t event_id, bool batch);
/*
 * The Invalidate @e, of @sub_id, was delivered and owes nothing now (acked
 * by its callback, or it asked no ack): it joins the open run when it is
 * the next of the same event, else it starts one.  Without runs (an mmnd
 * that does not take them, or @e of an earlier connection) an ack it asked
 * is batched as mmn__conn_ack() does.  0 or -errno.
 */
int mmn__conn_ack_delivered(struct mmn_client *c, uint64_t sub_id, const struct qev *e);
/* An Invalidate was delivered but not acked (MMN_ACK_LATER, or not sent): the open run ends.  0 or -errno. */
int mmn__conn_ack_break(struct mmn_client *c);
/* True while an ack waits to be sent (batched, or in the open run). */
bool mmn__conn_acks_waiting(const struct mmn_client *c);
/*
 * True when every ack waiting is in the open run and @next, queued, is a
 * later Invalidate of the same event on this connection: the run goes on.
 */
bool mmn__conn_run_goes_on(const struct mmn_client *c, const struct qev *next);
/* Send the batched acks and the open run as one AckMany.  0 or -errno. */
int mmn__conn_flush_acks(struct mmn_client *c);
/*
 * Read and hand up one packet.  Returns 1 when one was handled, 0 when
 * nothing is queued or there is no connection, < 0 when the connection was
 * dropped because of it (mmn__conn_lost() already ran).
 */
int mmn__conn_read_packet(struct mmn_client *c);
/* True while packets read by the last recvmmsg() wait to be handed up. */
bool mmn__conn_rx_pending(const struct mmn_client *c);
/* Close what the packets read but not handed up carried, and forget them. */
void mmn__conn_discard_rx(struct mmn_client *c);
/* Drop the connection (EOF, error, malformed input) and arm the backoff timer. */
void mmn__conn_lost(struct mmn_client *c, int err);
/* c->timerfd is readable: reconnect if it is time, never blocking. */
void mmn__conn_timer(struct mmn_client *c);

#endif
