/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Share tokens: a target lets a peer uid watch a range of it without the
 * ptrace rule.  Owned by the target's client (client->shares), freed with it.
 */
#ifndef MMN_DAEMON_SHARE_H
#define MMN_DAEMON_SHARE_H

#include <stdint.h>
#include <sys/types.h>

#include "engine/list.h"
#include "mmn.pb-c.h"

struct broker;
struct client;
struct sub_req;

struct share {
	struct list link; /* client->shares */
	uint8_t token[16];
	uint64_t start, end;
	uid_t peer_uid;
};

int mmn__share_create(struct client *c, const Mmn__V1__Share *s, uint8_t token[16]);
void mmn__share_free_all(struct client *c);

/* 0 when a client with pid @pid holds @token for @c's uid and @r (NULL: any range), else -EPERM. */
int mmn__share_check(struct broker *b, struct client *c, pid_t pid, const struct sub_req *r,
		     const ProtobufCBinaryData *token);

#endif
