/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The broker's administrative surface: what the D-Bus API (dbus.c) reads and
 * changes.  The broker implements these; dbus.c only calls them, on the loop
 * thread, and never keeps the pointers it is handed past the call.
 */
#ifndef MMN_DAEMON_ADMIN_H
#define MMN_DAEMON_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct broker;
struct config;
struct mmn_hist;

struct admin_stats {
	uint64_t clients, subscriptions, kernel_subscriptions;
	uint64_t invalidations;      /* source invalidations fanned out */
	uint64_t blocking_acks;      /* acks received from blocking clients */
	uint64_t timeouts;           /* blocking clients that missed a deadline */
	uint64_t evictions;          /* clients evicted (timeout or admin) */
	uint64_t nonblock_refusals;  /* non-blockable invalidations refused */
	uint64_t queue_overflows;    /* non-blocking queues coalesced */
	uint64_t protocol_errors;    /* clients dropped for bad messages */
	uint64_t implied_ends;       /* events ended by a later END of their target (fanout.c) */
	uint64_t end_timeouts;       /* events ended by the last-resort END timer: a lost END */
};

struct admin_defaults {
	uint32_t ack_timeout_ms;     /* default per-subscription deadline */
	uint32_t ack_cap_ms;         /* global cap no client deadline exceeds */
	uint32_t max_clients;
	uint32_t max_subs_per_client;
	uint32_t max_queued_events;  /* per non-blocking client before coalescing */
	uint32_t max_clients_per_uid; /* connections of one uid (root and mmnd's uid exempt) */
	uint32_t max_subs_per_uid;   /* subscriptions of one uid */
	uint32_t hello_timeout_ms;   /* a connection without Hello is closed after this */
};

struct admin_client {
	uint64_t id;
	pid_t pid;
	uid_t uid;
	const char *name;            /* Hello.client_name */
	const char *mode;            /* "blocking", "nonblocking", "mixed" or "idle" */
	uint32_t subscriptions;
	uint32_t pending_acks;
	uint64_t evictions;          /* subscriptions revoked for missed deadlines */
	const struct mmn_hist *ack_latency; /* blocking-ack latency (hist.h); NULL: none yet */
};

struct admin_sub {
	uint64_t id;
	uint64_t client_id;
	pid_t target_pid;
	uint64_t start, end;         /* end exclusive */
	uint32_t flags;              /* mmn.v1.SubFlag */
	uint64_t event_mask;
	uint64_t seq;                /* the sequence slot's current value */
	uint32_t ksub_id;
};

/* A sampled invalidation, for the rate-limited InvalidationSampled signal. */
struct admin_invalidation {
	pid_t target_pid;
	uint64_t start, end;
	uint32_t event;
	bool blockable;
	uint32_t clients;            /* clients notified */
	uint64_t latency_us;         /* until the kernel was acked, 0 if not blocking */
};

struct admin_observer {
	void (*client_connected)(void *ud, const struct admin_client *c);
	void (*client_disconnected)(void *ud, uint64_t client_id);
	void (*client_evicted)(void *ud, uint64_t client_id, const char *reason);
	void (*source_changed)(void *ud, const char *source);
	void (*invalidation)(void *ud, const struct admin_invalidation *inv);
	void *ud;
};

void mmn__admin_stats(struct broker *b, struct admin_stats *out);
void mmn__admin_get_defaults(struct broker *b, struct admin_defaults *out);
/*
 * -EINVAL when a value is out of range (nothing is changed then).  The
 * ranges are broker.h's MMN_BROKER_MAX_* (minimum 1); callers check each
 * value with options.h first to name the culprit.
 */
int mmn__admin_set_defaults(struct broker *b, const struct admin_defaults *d);
void mmn__admin_source(struct broker *b, const char **name, uint64_t *event_mask, bool *acks_hold_kernel);
void mmn__admin_foreach_client(struct broker *b, void (*fn)(const struct admin_client *, void *), void *ud);
/* client_id 0 / pid 0: any. */
void mmn__admin_foreach_sub(struct broker *b, uint64_t client_id, pid_t pid,
			    void (*fn)(const struct admin_sub *, void *), void *ud);
/* -ENOENT for an unknown client. */
int mmn__admin_evict(struct broker *b, uint64_t client_id);
/*
 * Re-read the configuration file (mmnd.conf(5)) set by
 * mmn__admin_set_config() and apply it: the live keys at once, the others
 * noted in the log as waiting for a restart.  All or nothing: 0, or a
 * negative errno with @msg saying why ("PATH:LINE: KEY ...") and no
 * setting changed.  Without a configuration, 0 and nothing changes.
 */
int mmn__admin_reload(struct broker *b, char *msg, size_t msg_size);
/* What mmn__admin_reload() re-reads; @c must outlive @b. */
void mmn__admin_set_config(struct broker *b, struct config *c);
/* One observer at a time (the bus); NULL removes it. */
void mmn__admin_set_observer(struct broker *b, const struct admin_observer *obs);

/* The bus side (dbus.c): attach to @loop and serve until closed. */
enum bus_kind { BUS_NONE, BUS_SYSTEM, BUS_SESSION, BUS_ADDRESS };
struct bus;
/* @address: for BUS_ADDRESS only (tests: a private dbus-daemon). */
int mmn__bus_open(uv_loop_t *loop, struct broker *b, enum bus_kind kind, const char *address, struct bus **out);
void mmn__bus_close(struct bus *bus);

#endif
