/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The recipients of an event (see recips.c).  Loop thread only.
 */
#ifndef MMN_DAEMON_RECIPS_H
#define MMN_DAEMON_RECIPS_H

#include <stdbool.h>
#include <stdint.h>

struct broker;
struct event;
struct recip;
struct sub;

/*
 * Make every event's recipient array hold at least @n recipients (called
 * before a subscription is linked, @n = subscriptions after it).  0 or
 * -ENOMEM; on failure the sub must not be linked.
 */
int mmn__recips_reserve(struct broker *b, uint32_t n);
/*
 * Test-only fault injection, 0 (off) by default: when non-zero, adding a
 * recipient to an event that already has this many fails as if the
 * allocation had, to exercise the fan-out's out-of-memory resync.
 */
extern uint32_t mmn__recips_fault;
/*
 * @s is going away (@keep_pairing false: its recipient entries close, the
 * pairing is closed by whoever kills it) or was unsubscribed while in flight
 * (@keep_pairing true: acks it owes no longer count, it still gets
 * InvalidateEnd).
 */
void mmn__recips_close_sub(struct broker *b, struct sub *s, bool keep_pairing);
/* Index @e's recipients by sub_id (the first of equal ids wins, as a scan would). */
void mmn__recips_index(struct event *e);
/* Clear @e's index (before its recipients change or it is pooled).  O(recipients). */
void mmn__recips_unindex(struct event *e);
/* @e's recipient for @sub_id, or NULL. */
struct recip *mmn__recips_find(struct event *e, uint64_t sub_id);
/* Grow @e's recipient array to at least @n, and its index to match.  0 or -ENOMEM. */
int mmn__recips_grow(struct event *e, uint32_t n);
/* Free @e's recipient array and index. */
void mmn__recips_free(struct event *e);
/* One more recipient of @e, or NULL (out of memory). */
struct recip *mmn__recips_add(struct event *e);
/* Ack the source for @e once, later, from settle; then wait for its END. */
void mmn__recips_queue_ack(struct event *e);
/* @r owes @e nothing any more; the last one queues the source's ack. */
void mmn__recips_settle(struct event *e, struct recip *r);

#endif
