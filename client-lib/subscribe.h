/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The steps of mmn_subscribe() and mmn_unsubscribe() (subscribe.c), which
 * the batch calls (batch.c) take item by item.  c->lock held where said.
 */
#ifndef MMN_CLIENT_SUBSCRIBE_H
#define MMN_CLIENT_SUBSCRIBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mmn/mmn.h"

struct mmn_client;
struct mmn_sub;

/* A new, unlinked handle for mmn_subscribe()'s arguments, or NULL with *@err set as it reports. */
struct mmn_sub *mmn__subscribe_new(struct mmn_client *c, pid_t pid, uint64_t start, uint64_t length,
				   const struct mmn_sub_opts *opts, int *err);
/*
 * Whether @s may be requested now (c->lock held): 0, -ENOTCONN, and for
 * the uffd source -EOPNOTSUPP (not this process; else its pid becomes 0) or
 * -ENOMEM (not fully mapped).
 */
int mmn__subscribe_check(struct mmn_client *c, struct mmn_sub *s);
/*
 * Check, send the Subscribe for @s and wait for its reply (c->req_lock and
 * c->lock held).  0 when the reply linked @s (pinned), else an errno and @s
 * unseen.
 */
int mmn__subscribe_locked(struct mmn_client *c, struct mmn_sub *s);
/* @s, linked by its reply, goes to the caller: its pin is dropped (c->lock held). */
void mmn__subscribe_hand_out(struct mmn_sub *s);
/* The client of the handle @s, for the calls that take a handle: 0, -EINVAL or -ECHILD. */
int mmn__sub_client(struct mmn_sub *s, struct mmn_client **c);
/*
 * mmn_unsubscribe()'s first step (c->lock held, released while a callback
 * of @s on another thread finishes): @s is removed and pinned, and *@tell
 * says whether mmnd must get an Unsubscribe of s->sub_id (the caller sends
 * it).  0, or -EALREADY.
 */
int mmn__unsubscribe_begin(struct mmn_client *c, struct mmn_sub *s, bool *tell);
/*
 * The last step (c->lock held, released while the callbacks run): ends
 * what was delivered of @s and keeps it as a tombstone.
 */
void mmn__unsubscribe_finish(struct mmn_client *c, struct mmn_sub *s);

#endif
