/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What mmnd's packets mean for this client (session.c): the handshake's
 * HelloReply, the replies to requests, the events queued for mmn_dispatch(),
 * and what a lost connection ends.  All under c->lock.
 */
#ifndef MMN_CLIENT_SESSION_H
#define MMN_CLIENT_SESSION_H

#include <stdint.h>

#include "conn.h"

struct mmn_client;

/* Installed as c->conn_ops by mmn_connect(). */
extern const struct conn_ops mmn__session_ops;

/*
 * Wait (c->lock held, released while polling) for the reply to the user
 * request @req_id (c->req_id): its error, or -ETIMEDOUT / -ECONNRESET.
 */
int mmn__session_wait_reply(struct mmn_client *c, uint64_t req_id);

#endif
