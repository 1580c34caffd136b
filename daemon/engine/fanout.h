/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fan-out: one source invalidation in flight (an event), its recipients,
 * their acks and deadlines.  Loop thread only.
 *
 * event   one source invalidation in flight, from SOURCE_INVALIDATE to
 *         SOURCE_INVALIDATE_END; recycled through a pool so the fan-out
 *         and ack paths do not allocate once warm.
 */
#ifndef MMN_DAEMON_FANOUT_H
#define MMN_DAEMON_FANOUT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "engine/idmap.h"
#include "engine/list.h"
#include "source/source.h"

struct broker;
struct client;
struct sub;

enum recip_state {
	RECIP_NOTIFIED, /* told, nothing owed */
	RECIP_PENDING,	/* owes an Ack before its deadline */
	RECIP_CLOSED,	/* sub gone: pairing closed by Revoked/Release, or client lost */
};

#define RECIP_NONE UINT32_MAX

struct recip {
	struct sub *sub; /* NULL when closed */
	uint64_t sub_id;
	/*
	 * The sub's client while the recipient is open.  Cleared together
	 * with @sub whenever the recipient closes (mmn__recips_close_sub,
	 * before the client can be freed): a closed recipient never points at
	 * a client, so a later client at the same address cannot match it.
	 */
	struct client *c;
	uint64_t client_id; /* the sub's client at fan-out; kept when closed */
	/*
	 * The index of the next recipient of this event sent to the same
	 * client, in the order sent, or RECIP_NONE: an AckMany run walks it.
	 * Set by fanout_notify; recipients never move within @recips.
	 */
	uint32_t next_of_client;
	uint64_t deadline;   /* loop time, ms */
	uint64_t start, end; /* the event's range clipped to the sub */
	uint8_t state;
	bool suppressed; /* coalesced away: the client never saw this Invalidate */
};

struct event {
	struct list link;  /* broker->events or broker->event_pool */
	struct idmap_node idn; /* broker->event_ids by id while in broker->events */
	struct list alink; /* broker->ack_queue while queued */
	struct broker *b;
	uint64_t id;
	struct target *t;
	uint32_t type;
	bool blockable, needs_ack, refused;
	bool acked;			 /* the source was acked (or need not be) */
	/*
	 * Refused events only: the source's END came while blocking recipients
	 * still owed acks.  The kernel did not go ahead, so they still hold
	 * mappings: the recipients that owed nothing were ended then, the
	 * event stays in flight for the others (no InvalidateEnd, slots odd)
	 * until they acked or were evicted and BLOCKING was cleared.
	 */
	bool end_seen;
	uint64_t begin_ns;		 /* uv_hrtime() at START */
	uint64_t range_start, range_end; /* the source's unclipped range, if it said */
	uint32_t npending;
	uint32_t nrecips, cap;
	struct recip *recips; /* pre-sized to broker->recip_reserve (mmn__recips_reserve) */
	/*
	 * sub_id -> recipient index + 1 (0: empty), open addressing, hcap a
	 * power of two at least twice cap; sized with recips.  Valid while
	 * @hashed (only events with more than a few recipients: the ack path
	 * scans @recips otherwise).  All zero but the entries of the current
	 * recipients, which are cleared one by one when the event ends: an
	 * event costs O(recipients), never O(hcap).
	 */
	uint32_t *rhash;
	uint32_t hcap;
	bool hashed;
	uint32_t nksubs, kcap;
	uint32_t *ksubs; /* refused events: the listed ksub ids, to clear BLOCKING */
	uv_timer_t timer; /* earliest pending deadline; initialised once, pooled */
	uv_timer_cb timer_cb; /* fanout.c's deadline callback, for recips.c to restart @timer */
	bool timer_inited;
};

void mmn__fanout_event(struct broker *b, const struct source_event *ev);
int mmn__fanout_ack(struct client *c, uint64_t sub_id, uint64_t event_id);
/*
 * Ack @n >= 1 consecutive Invalidates of @event_id sent to @c, the first
 * for @sub_id (AckMany.runs): O(n).  0, or -ENOENT if the event or that
 * first recipient is not @c's.
 */
int mmn__fanout_ack_run(struct client *c, uint64_t sub_id, uint64_t event_id, uint32_t n);
void mmn__fanout_flush_acks(struct broker *b);
void mmn__fanout_free_pool(struct broker *b);
/* Drain: ack every event still waiting. */
void mmn__fanout_ack_all(struct broker *b);

#endif
