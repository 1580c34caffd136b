/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Share tokens: a target process creates one over its own connection for a
 * range and a peer uid; a client of that uid presenting the token may watch
 * that range without the ptrace rule.  A token lives as long as the
 * connection that created it.
 */

#include "clients/share.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "engine/list.h"
#include "engine/sub.h"

#define MAX_SHARES_PER_CLIENT 64

int mmn__share_check(struct broker *b, struct client *c, pid_t pid, const struct sub_req *r,
		     const ProtobufCBinaryData *token)
{
	list_for_each(pos, &b->clients)
	{
		struct client *o = list_entry(pos, struct client, link);

		if (o->pid != pid)
			continue;
		list_for_each(sp, &o->shares)
		{
			struct share *sh = list_entry(sp, struct share, link);

			if (memcmp(sh->token, token->data, sizeof(sh->token)) != 0)
				continue;
			if (sh->peer_uid != c->uid)
				return -EPERM;
			if (r && (r->start < sh->start || r->end > sh->end))
				return -EPERM;
			return 0;
		}
	}
	return -EPERM;
}

int mmn__share_create(struct client *c, const Mmn__V1__Share *s, uint8_t token[16])
{
	struct share *sh;
	unsigned n = 0;

	if (s->length == 0 || s->start >= MMN_TASK_SIZE || s->length > MMN_TASK_SIZE - s->start)
		return -EINVAL;
	list_for_each(pos, &c->shares) n++;
	if (n >= MAX_SHARES_PER_CLIENT)
		return -ENOSPC;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	if (getrandom(sh->token, sizeof(sh->token), 0) != (ssize_t)sizeof(sh->token)) {
		free(sh);
		return -EIO;
	}
	sh->start = s->start;
	sh->end = s->start + s->length;
	sh->peer_uid = s->peer_uid;
	list_add_tail(&c->shares, &sh->link);
	memcpy(token, sh->token, sizeof(sh->token));
	return 0;
}

void mmn__share_free_all(struct client *c)
{
	while (!list_empty(&c->shares)) {
		struct share *sh = list_entry(c->shares.next, struct share, link);

		list_del(&sh->link);
		free(sh);
	}
}
