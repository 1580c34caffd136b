/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The broker: mmnd's core, used by main.c, the unit tests and bench/.
 *
 * Lifetime: mmn__broker_new() takes ownership of the source; listen on one
 * or more sockets; run the loop; mmn__broker_drain() to stop gracefully
 * (every pending kernel invalidation is acked, every client is told
 * Revoked{shutdown}); mmn__broker_free() closes every handle.  The memory
 * is released from close callbacks, so run the loop once more after free
 * (uv_run(loop, UV_RUN_DEFAULT)) before uv_loop_close().
 *
 * Everything runs on the one loop thread; nothing here is thread-safe.
 */
#ifndef MMN_DAEMON_BROKER_H
#define MMN_DAEMON_BROKER_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "source/source.h"

struct broker;

struct broker_options {
	uint32_t ack_timeout_ms; /* default per-subscription deadline */
	uint32_t ack_cap_ms;	 /* no deadline exceeds this */
	uint32_t max_clients;
	uint32_t max_subs;    /* per client; also the sequence page's slot count */
	uint32_t max_queued;  /* queued messages per client before coalescing */
	uint32_t max_targets; /* distinct target processes (0: default) */
	uint32_t
		end_timeout_ms; /* an acked event without the source's END is ended after this (0: default) */
	/*
	 * Per-uid limits, so one user cannot take every slot.  Root and
	 * mmnd's own uid are exempt unless @limit_privileged (tests).  A
	 * limited uid never holds more than max_clients - 1 connections,
	 * whatever max_clients_per_uid says: another uid can always connect.
	 */
	uint32_t max_clients_per_uid; /* connections, with or without Hello */
	uint32_t max_subs_per_uid;    /* subscriptions (live and deferred) of all its connections */
	uint32_t hello_timeout_ms;    /* a connection without Hello after this is closed */
	bool limit_privileged;
};

#define MMN_BROKER_DEFAULT_ACK_TIMEOUT_MS      1000
#define MMN_BROKER_DEFAULT_ACK_CAP_MS	       1500 /* below mmn.ko's default max_ack_timeout_ms, 2000 */
#define MMN_BROKER_DEFAULT_MAX_CLIENTS	       1024
/*
 * Sized for a registration cache (one process may hold 100,000 regions or
 * more); a subscription costs mmnd about 200 bytes, and its sequence slot
 * 8 bytes of memory only once used.
 */
#define MMN_BROKER_DEFAULT_MAX_SUBS	       (UINT32_C(1) << 20)
#define MMN_BROKER_DEFAULT_MAX_QUEUED	       1024
#define MMN_BROKER_DEFAULT_MAX_TARGETS	       4096
#define MMN_BROKER_DEFAULT_END_TIMEOUT_MS      60000
#define MMN_BROKER_DEFAULT_MAX_CLIENTS_PER_UID 128
#define MMN_BROKER_DEFAULT_MAX_SUBS_PER_UID    (UINT32_C(1) << 20)
#define MMN_BROKER_DEFAULT_HELLO_TIMEOUT_MS    5000

/*
 * Ranges accepted by options and by mmn__admin_set_defaults() (the minimum
 * is 1 for every numeric option; see options.h for the parser).
 */
#define MMN_BROKER_MAX_ACK_CAP_MS	  600000
#define MMN_BROKER_MAX_SUBS_LIMIT	  (UINT32_C(1) << 24)
#define MMN_BROKER_MAX_CLIENTS_LIMIT	  65536
#define MMN_BROKER_MAX_QUEUED_LIMIT	  (UINT32_C(1) << 20)
#define MMN_BROKER_MAX_TARGETS_LIMIT	  1048576
#define MMN_BROKER_MAX_END_TIMEOUT_MS	  3600000
#define MMN_BROKER_MAX_SUBS_PER_UID_LIMIT (UINT32_C(1) << 24)
#define MMN_BROKER_MAX_HELLO_TIMEOUT_MS	  600000

/*
 * The bounded numbers of struct broker_options, each 1..max: the one list
 * behind mmnd's command line and mmnd.conf (config.c), the broker's check
 * (mmn__broker_options_explain) and the D-Bus defaults (dbus.c).
 * X(field, name on the command line and in mmnd.conf, maximum).
 */
#define MMN_BROKER_BOUNDED_OPTIONS(X)                                                                        \
	X(ack_cap_ms, "ack-cap-ms", MMN_BROKER_MAX_ACK_CAP_MS)                                               \
	X(ack_timeout_ms, "ack-timeout-ms", MMN_BROKER_MAX_ACK_CAP_MS)                                       \
	X(max_clients, "max-clients", MMN_BROKER_MAX_CLIENTS_LIMIT)                                          \
	X(max_subs, "max-subs", MMN_BROKER_MAX_SUBS_LIMIT)                                                   \
	X(max_queued, "max-queued", MMN_BROKER_MAX_QUEUED_LIMIT)                                             \
	X(max_targets, "max-targets", MMN_BROKER_MAX_TARGETS_LIMIT)                                          \
	X(end_timeout_ms, "end-timeout-ms", MMN_BROKER_MAX_END_TIMEOUT_MS)                                   \
	X(max_clients_per_uid, "max-clients-per-uid", MMN_BROKER_MAX_CLIENTS_LIMIT)                          \
	X(max_subs_per_uid, "max-subs-per-uid", MMN_BROKER_MAX_SUBS_PER_UID_LIMIT)                           \
	X(hello_timeout_ms, "hello-timeout-ms", MMN_BROKER_MAX_HELLO_TIMEOUT_MS)

struct broker_option_bound {
	const char *name; /* as on the command line and in mmnd.conf */
	size_t off;	  /* of its uint32_t in struct broker_options */
	uint32_t max;	  /* the range is 1..max */
};

/*
 * Every bounded option; *@n gets their number.  Header-only, because
 * dbus.c is also built in front of a scripted broker, without broker.c.
 */
static inline const struct broker_option_bound *mmn__broker_option_bounds(size_t *n)
{
#define MMN_BROKER_BOUND_ENTRY(field, name, max) {name, offsetof(struct broker_options, field), max},
	static const struct broker_option_bound bounds[] = {
		MMN_BROKER_BOUNDED_OPTIONS(MMN_BROKER_BOUND_ENTRY)};
#undef MMN_BROKER_BOUND_ENTRY

	*n = sizeof(bounds) / sizeof(bounds[0]);
	return bounds;
}

/* The bound of the option called @name; NULL when it has none. */
static inline const struct broker_option_bound *mmn__broker_option_bound(const char *name)
{
	size_t n;
	const struct broker_option_bound *b = mmn__broker_option_bounds(&n);

	for (size_t i = 0; i < n; i++)
		if (strcmp(b[i].name, name) == 0)
			return &b[i];
	return NULL;
}

void mmn__broker_options_default(struct broker_options *o);
/* 0 or -EINVAL. */
int mmn__broker_options_check(const struct broker_options *o);
/* The same; on -EINVAL *@why names the option and its range. */
int mmn__broker_options_explain(const struct broker_options *o, const char **why);

/*
 * Create a broker on @loop serving events of @src (ownership passes to the
 * broker, also on failure).  The source is started here.
 */
int mmn__broker_new(uv_loop_t *loop, struct source *src, const struct broker_options *o, struct broker **out);

/* Serve clients on a listening SOCK_SEQPACKET socket (ownership passes). */
int mmn__broker_listen_fd(struct broker *b, int fd);
/*
 * Create, bind and listen on @path.  Only a stale socket there (one nobody
 * listens on) is replaced: -ENOTSOCK when @path exists and is not a socket
 * (a symlink included; nothing is removed or changed), -EADDRINUSE when
 * something listens on it.
 */
int mmn__broker_listen_path(struct broker *b, const char *path);

/* uv_run(loop, UV_RUN_DEFAULT) until drained. */
int mmn__broker_run(struct broker *b);

/*
 * Stop: stop accepting, tell every client Revoked{shutdown}, ack every
 * pending kernel invalidation, remove every kernel subscription, close every
 * connection.  Synchronous; safe to call twice.  Handles stay open until
 * mmn__broker_free().
 */
void mmn__broker_drain(struct broker *b);
void mmn__broker_free(struct broker *b);

struct source *mmn__broker_source(struct broker *b);
uv_loop_t *mmn__broker_loop(struct broker *b);
/* Invalidations still waiting for acks (tests, drain). */
size_t mmn__broker_pending_events(struct broker *b);
size_t mmn__broker_nclients(struct broker *b);

#endif
