/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Resubscription after a reconnection (resub.c): batches of re-Subscribes,
 * a few in flight at a time, and their replies.  All under c->lock.
 */
#ifndef MMN_CLIENT_RESUB_H
#define MMN_CLIENT_RESUB_H

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

struct mmn_client;

/*
 * HelloReply handled: resubscribe every live sub (c->state becomes
 * CONN_RESUB, or CONN_CONNECTED when there is nothing to wait for).
 * 0, or a send error: then drop the connection.
 */
int mmn__resub_start(struct mmn_client *c);
/* Whether @req is the id of a re-Subscribe request of this connection. */
bool mmn__resub_is_reply(const struct mmn_client *c, uint64_t req);
/*
 * The reply to the re-Subscribe request @req: @sr, @mr, or the error @err
 * (a Status or an Error).  Each sub it names gets its RESYNC (or fails);
 * then the next request goes.  0, or a send error: drop the connection.
 */
int mmn__resub_answer(struct mmn_client *c, uint64_t req, int err, const Mmn__V1__SubscribeReply *sr,
		      const Mmn__V1__SubscribeManyReply *mr);
/* The connection is gone: no re-Subscribe is pending any more. */
void mmn__resub_lost(struct mmn_client *c);

#endif
