/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * RPC: one decoded request of a client, dispatched to its handler.
 */
#ifndef MMN_DAEMON_RPC_H
#define MMN_DAEMON_RPC_H

#include <stddef.h>

#include "wire.h"

struct client;

void mmn__rpc_dispatch(struct client *c, const MmnEnvelope *env, int *fds, size_t nfds);

#endif
