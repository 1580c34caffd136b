/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * struct broker, for the files under daemon/ and white-box unit tests (not
 * for main.c, bench/ or dbus.c: they use broker.h and admin.h).  Each
 * object's struct is in its own header (engine/sub.h, clients/client.h, ...);
 * their lifetimes, which cross files, are summed up here.
 *
 * Ownership and lifetime, all on the one loop thread (no locks anywhere):
 *   broker  owns listeners, clients, targets, ksubs, in-flight events.
 *   client  owns its subscriptions (client->subs), its sequence page and
 *           its share tokens.  A dropped client is unlinked at once and its
 *           memory freed in the uv_close callback of its poll handle.
 *   uid_acct  per-uid connection and subscription counts; in broker->uhash
 *           while a connection of that uid exists (created at accept,
 *           freed when its last client is destroyed).  Clients point at it.
 *   target  one watched process (pid + pidfd).  Refcounted by its subs,
 *           ksubs, deferred requests and in-flight events; freed at 0.
 *   ksub    one source subscription; owned by its target; lives while it
 *           has subs (or until the source releases it).
 *   sub     a client's subscription: in client->subs, in ksub->subs and in
 *           the target's index while SUB_LIVE/SUB_DYING.
 *   event   one source invalidation in flight, from SOURCE_INVALIDATE to
 *           SOURCE_INVALIDATE_END; recycled through a pool so the fan-out
 *           and ack paths do not allocate once warm.
 *
 * Reentrancy: source acks and client drops are queued and performed by
 * broker_settle() at the end of every loop callback, so no callback ever
 * frees an object another frame is iterating.
 */
#ifndef MMN_DAEMON_BROKER_INTERNAL_H
#define MMN_DAEMON_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <uv.h>

#include "admin/admin.h"
#include "broker.h"
#include "engine/idmap.h"
#include "engine/list.h"
#include "engine/sink.h"
#include "log.h"
#include "mmn.pb-c.h"

/* The user address space of x86-64 / arm64 (4-level): TASK_SIZE. */
#define MMN_TASK_SIZE ((UINT64_C(1) << 47) - 4096)
#define MMN_PAGE_SIZE UINT64_C(4096)

/* Event mask of every EventType mmn knows. */
#define MMN_EVENT_MASK_ALL ((UINT64_C(1) << (MMN__V1__EVENT_TYPE__EVENT_RESYNC + 1)) - 1)

struct broker;

#define UHASH_SIZE 256

struct broker {
	uv_loop_t *loop;
	struct source *src;
	/* How the engine reaches the clients (set by broker.c; see engine/sink.h). */
	struct engine_sink sink;
	/*
	 * The end of every loop callback, set by broker.c: ack the source for
	 * events that are done and drop the clients queued for dropping.
	 */
	void (*settle)(struct broker *b);
	struct broker_options opt;
	struct list listeners;
	struct list clients;
	struct list reap; /* clients to drop at settle */
	struct list batched; /* clients with EventBatch records to send before the next poll (client->blink) */
	struct list targets;
	struct list events;
	struct list event_pool;
	struct list ack_queue;
	/* By id: ksubs (ksub->idn), subs of clients (sub->idn), events in flight (event->idn). */
	struct idmap ksub_ids, sub_ids, event_ids;
	uint32_t nevents; /* events allocated (pooled or in flight): event_ids is reserved for them */
	struct uid_acct *uhash[UHASH_SIZE];
	/*
	 * Connections still owing Hello, oldest first: every deadline is
	 * accepted_at + opt.hello_timeout_ms, so the head expires first and
	 * one timer (armed for the head while the list is not empty) serves all.
	 */
	struct list unhello;
	uv_timer_t hello_timer;
	/* Sends the clients' event batches before every poll (broker.c; clients/send.c). */
	uv_prepare_t batch_prepare;
	uint64_t batch_gen; /* 1 + mmn__client_send_batches() calls so far: struct client's batch_gen */
	uint32_t nclients, ntargets;
	uint64_t next_client_id, next_sub_id;
	uint64_t fanout_gen; /* fanout_notify calls so far: struct client's chain_gen */
	uint64_t nksubs;
	/*
	 * Every event's recipient array (pooled or in flight) holds at least
	 * this many: one per subscription that exists, the most one event can
	 * reach.  Grown before a sub is linked, so fan-out never allocates.
	 */
	uint32_t recip_reserve;
	struct admin_stats stats;
	struct admin_observer obs;
	bool has_obs;
	/* What Reload re-reads (admin.c), or NULL: nothing.  Owned by main.c, outlives the broker. */
	struct config *config;
	bool draining, freed, source_lost;
	unsigned handles; /* open uv handles; the broker is freed when 0 after free */
	struct ratelimit rl_client;
	uint64_t last_trim; /* loop time of the last malloc_trim() */
	/* protobuf-c arena for decoding one message: no malloc on the receive path */
	size_t arena_used;
	uint8_t arena[32768] __attribute__((aligned(16)));
};

/* The loop's time in ms, as deadlines count it. */
static inline uint64_t mmn__broker_now(struct broker *b)
{
	return uv_now(b->loop);
}

/* One of the broker's uv handles finished closing: free it after the last. */
static inline void mmn__broker_handle_closed(struct broker *b)
{
	if (--b->handles == 0 && b->freed)
		free(b);
}

#endif
