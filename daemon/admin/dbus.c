/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The org.mmn.Broker1 D-Bus API (man/org.mmn.Broker1.5) on mmnd's libuv
 * loop.
 *
 * bus-uv.c drives the connection on the loop; this file is the vtable, the
 * credential checks and the broker observer that turns into signals.
 *
 * Everything here runs on the loop thread; struct bus has no lock.
 * Lifetime: mmn__bus_open() allocates it; mmn__bus_close() drops the
 * connection at once and bus-uv frees the struct from its last handle's
 * close callback (the caller runs the loop once more, as for any libuv
 * handle).
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>

#include "admin/admin.h"
#include "broker.h"
#include "admin/bus-uv.h"
#include "hist.h"
#include "log.h"
#include "options.h"

#ifndef MMN_VERSION
#define MMN_VERSION "unknown"
#endif

#define BUS_NAME		 "org.mmn.Broker1"
#define BUS_PATH		 "/org/mmn/Broker1"
#define BUS_IFACE		 "org.mmn.Broker1.Manager"
#define BUS_ERROR_NO_SUCH_CLIENT "org.mmn.Broker1.Error.NoSuchClient"
#define BUS_ERROR_INVALID_VALUE	 "org.mmn.Broker1.Error.InvalidValue"
#define BUS_ERROR_RELOAD_FAILED	 "org.mmn.Broker1.Error.ReloadFailed"

/* InvalidationSampled: at most this many signals per second. */
#define SAMPLE_PER_SEC 10

struct bus {
	struct bus_uv uv; /* the sd_bus and its loop handles */
	uv_loop_t *loop;
	struct broker *broker;
	gid_t read_gid; /* group allowed read-only calls */
	bool have_read_gid;
	uint64_t sample_window;	  /* uv_now() of the current one-second window */
	unsigned int samples;	  /* signals sent in that window */
	uint64_t suppressed;	  /* samples dropped since the last one sent */
	struct ratelimit emit_rl; /* warnings about failed emits */
};

/* A stuck bus fails every emit: a few warnings per minute at most. */
static void warn_emit(struct bus *bus, int r, const char *what)
{
	if (r < 0 && mmn__ratelimit_ok(&bus->emit_rl, uv_now(bus->loop)))
		mmn__log(LOG_WARNING, NULL, "Failed to emit %s, ignoring: %s", what, strerror(-r));
}

/* Who may call: root for everything, the read group for read-only calls. */

/*
 * The sender's supplementary groups as dbus-daemon recorded them when it
 * connected (SO_PEERGROUPS; GetConnectionCredentials "UnixGroupIDs").
 * sd-bus 252 only finds groups by reading /proc/PID of the sender, which
 * races with the sender exiting, so ask the bus.  false when it cannot say.
 */
static bool sender_in_group(sd_bus_message *m, gid_t gid)
{
	sd_bus_message *reply = NULL;
	const char *key;
	bool found = false;
	int r;

	r = sd_bus_call_method(sd_bus_message_get_bus(m), "org.freedesktop.DBus", "/org/freedesktop/DBus",
			       "org.freedesktop.DBus", "GetConnectionCredentials", NULL, &reply, "s",
			       sd_bus_message_get_sender(m));
	if (r < 0)
		return false;
	r = sd_bus_message_enter_container(reply, 'a', "{sv}");
	while (r >= 0 && !found && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
		r = sd_bus_message_read(reply, "s", &key);
		if (r >= 0 && strcmp(key, "UnixGroupIDs") == 0) {
			const uint32_t *gids;
			size_t size = 0;

			r = sd_bus_message_enter_container(reply, 'v', "au");
			if (r >= 0)
				r = sd_bus_message_read_array(reply, 'u', (const void **)&gids, &size);
			for (size_t i = 0; r >= 0 && i < size / sizeof(*gids); i++)
				found = found || gids[i] == gid;
			break;
		}
		if (r >= 0)
			r = sd_bus_message_skip(reply, "v");
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
	}
	sd_bus_message_unref(reply);
	return found;
}

/*
 * The sender's credentials come from the bus, never from the message: the
 * effective uid dbus-daemon recorded when the peer connected (SO_PEERCRED),
 * and for read-only calls its supplementary groups (sender_in_group()).
 * Returns 1 when allowed, else sets AccessDenied and returns the error.
 */
static int check_access(struct bus *bus, sd_bus_message *m, bool change, sd_bus_error *error)
{
	sd_bus_creds *c = NULL;
	uid_t euid;
	bool ok = false;
	int r;

	r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &c);
	if (r < 0)
		return sd_bus_error_set_errnof(error, -r, "Failed to query caller credentials: %s",
					       strerror(-r));
	if (sd_bus_creds_get_euid(c, &euid) >= 0) {
		if (euid == 0)
			ok = true;
		else if (!change && bus->have_read_gid)
			ok = sender_in_group(m, bus->read_gid);
	}
	sd_bus_creds_unref(c);
	if (ok)
		return 1;
	return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
				 change ? "Changing mmnd requires root"
					: "Reading mmnd's state requires root or membership in group mmn");
}

/* A property or dictionary key and the struct field behind it. */
struct key_off {
	const char *key;
	size_t off;
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* GetStats keys and counter property names: stable API (man/org.mmn.Broker1.5). */
static const struct key_off stat_keys[] = {
	{"Clients", offsetof(struct admin_stats, clients)},
	{"Subscriptions", offsetof(struct admin_stats, subscriptions)},
	{"KernelSubscriptions", offsetof(struct admin_stats, kernel_subscriptions)},
	{"Invalidations", offsetof(struct admin_stats, invalidations)},
	{"BlockingAcks", offsetof(struct admin_stats, blocking_acks)},
	{"Timeouts", offsetof(struct admin_stats, timeouts)},
	{"Evictions", offsetof(struct admin_stats, evictions)},
	{"NonBlockableRefusals", offsetof(struct admin_stats, nonblock_refusals)},
	{"QueueOverflows", offsetof(struct admin_stats, queue_overflows)},
	{"ProtocolErrors", offsetof(struct admin_stats, protocol_errors)},
	{"ImpliedEnds", offsetof(struct admin_stats, implied_ends)},
	{"EndTimeouts", offsetof(struct admin_stats, end_timeouts)},
};

/*
 * SetDefaults keys and default property names: the field in struct
 * admin_defaults and the broker option it sets, whose range (1..max) is
 * broker.h's MMN_BROKER_BOUNDED_OPTIONS.
 */
static const struct default_key {
	const char *key;
	size_t off;
	const char *option;
} default_keys[] = {
	{"DefaultAckTimeoutMSec", offsetof(struct admin_defaults, ack_timeout_ms), "ack-timeout-ms"},
	{"AckCapMSec", offsetof(struct admin_defaults, ack_cap_ms), "ack-cap-ms"},
	{"MaxClients", offsetof(struct admin_defaults, max_clients), "max-clients"},
	{"MaxSubscriptionsPerClient", offsetof(struct admin_defaults, max_subs_per_client), "max-subs"},
	{"MaxQueuedEvents", offsetof(struct admin_defaults, max_queued_events), "max-queued"},
	{"MaxClientsPerUid", offsetof(struct admin_defaults, max_clients_per_uid), "max-clients-per-uid"},
	{"MaxSubscriptionsPerUid", offsetof(struct admin_defaults, max_subs_per_uid), "max-subs-per-uid"},
	{"HelloTimeoutMSec", offsetof(struct admin_defaults, hello_timeout_ms), "hello-timeout-ms"},
};

/* Properties. */

static int prop_version(sd_bus *sd, const char *path, const char *iface, const char *prop,
			sd_bus_message *reply, void *ud, sd_bus_error *error)
{
	return sd_bus_message_append(reply, "s", MMN_VERSION);
}

static int prop_source(sd_bus *sd, const char *path, const char *iface, const char *prop,
		       sd_bus_message *reply, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	const char *name = NULL;
	uint64_t mask = 0;
	bool hold = false;

	mmn__admin_source(bus->broker, &name, &mask, &hold);
	if (strcmp(prop, "Source") == 0)
		return sd_bus_message_append(reply, "s", name ? name : "");
	if (strcmp(prop, "SourceEventMask") == 0)
		return sd_bus_message_append(reply, "t", mask);
	return sd_bus_message_append(reply, "b", (int)hold);
}

/* Counters and defaults are read fresh on every Get, found by name. */
static int prop_stat(sd_bus *sd, const char *path, const char *iface, const char *prop, sd_bus_message *reply,
		     void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	struct admin_stats st;

	mmn__admin_stats(bus->broker, &st);
	for (size_t i = 0; i < N_ELEMS(stat_keys); i++)
		if (strcmp(stat_keys[i].key, prop) == 0)
			return sd_bus_message_append(
				reply, "t", *(const uint64_t *)((const char *)&st + stat_keys[i].off));
	return -ENOENT;
}

static int prop_default(sd_bus *sd, const char *path, const char *iface, const char *prop,
			sd_bus_message *reply, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	struct admin_defaults d;

	mmn__admin_get_defaults(bus->broker, &d);
	for (size_t i = 0; i < N_ELEMS(default_keys); i++)
		if (strcmp(default_keys[i].key, prop) == 0)
			return sd_bus_message_append(
				reply, "u", *(const uint32_t *)((const char *)&d + default_keys[i].off));
	return -ENOENT;
}

/* Methods. */

static int append_client(sd_bus_message *reply, const struct admin_client *c)
{
	return sd_bus_message_append(reply, "(tuussuut)", c->id, (uint32_t)c->pid, (uint32_t)c->uid,
				     c->name ? c->name : "", c->mode ? c->mode : "", c->subscriptions,
				     c->pending_acks, c->evictions);
}

struct walk {
	sd_bus_message *reply;
	int r;
};

/* Reply to @m with an array of @sig whose elements the walk @fill appends. */
static int reply_array(struct bus *bus, sd_bus_message *m, const char *sig,
		       void (*fill)(struct bus *, struct walk *, uint64_t, pid_t), uint64_t client_id, pid_t pid)
{
	sd_bus_message *reply = NULL;
	struct walk w;
	int r;

	r = sd_bus_message_new_method_return(m, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_open_container(reply, 'a', sig);
	if (r >= 0) {
		w = (struct walk){reply, 0};
		fill(bus, &w, client_id, pid);
		r = w.r;
	}
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	sd_bus_message_unref(reply);
	return r;
}

static void list_client_cb(const struct admin_client *c, void *ud)
{
	struct walk *w = ud;

	if (w->r >= 0)
		w->r = append_client(w->reply, c);
}

static void walk_clients(struct bus *bus, struct walk *w, uint64_t client_id, pid_t pid)
{
	mmn__admin_foreach_client(bus->broker, list_client_cb, w);
}

static int method_list_clients(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	int r;

	r = check_access(bus, m, false, error);
	if (r < 0)
		return r;
	return reply_array(bus, m, "(tuussuut)", walk_clients, 0, 0);
}

/*
 * GetClientHistograms: per client, every bucket of its blocking-ack latency
 * histogram as (upper bound in ns, UINT64_MAX for the last; count in that
 * bucket alone), the sum of the latencies in ns and its deadline misses.
 */
static int append_client_hist(sd_bus_message *reply, const struct admin_client *c)
{
	int r;

	r = sd_bus_message_open_container(reply, 'r', "tuusa(tt)tt");
	if (r >= 0)
		r = sd_bus_message_append(reply, "tuus", c->id, (uint32_t)c->pid, (uint32_t)c->uid,
					  c->name ? c->name : "");
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'a', "(tt)");
	for (unsigned i = 0; r >= 0 && i < MMN_HIST_BUCKETS; i++)
		r = sd_bus_message_append(reply, "(tt)", mmn__hist_bound_ns(i),
					  c->ack_latency ? c->ack_latency->bucket[i] : 0);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = sd_bus_message_append(reply, "tt", c->ack_latency ? c->ack_latency->sum_ns : 0,
					  c->evictions);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

static void client_hist_cb(const struct admin_client *c, void *ud)
{
	struct walk *w = ud;

	if (w->r >= 0)
		w->r = append_client_hist(w->reply, c);
}

static void walk_client_hists(struct bus *bus, struct walk *w, uint64_t client_id, pid_t pid)
{
	mmn__admin_foreach_client(bus->broker, client_hist_cb, w);
}

static int method_get_client_histograms(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	int r;

	r = check_access(bus, m, false, error);
	if (r < 0)
		return r;
	return reply_array(bus, m, "(tuusa(tt)tt)", walk_client_hists, 0, 0);
}

static void list_sub_cb(const struct admin_sub *s, void *ud)
{
	struct walk *w = ud;

	if (w->r >= 0)
		w->r = sd_bus_message_append(w->reply, "(ttuttuttu)", s->id, s->client_id,
					     (uint32_t)s->target_pid, s->start, s->end, s->flags,
					     s->event_mask, s->seq, s->ksub_id);
}

static void walk_subs(struct bus *bus, struct walk *w, uint64_t client_id, pid_t pid)
{
	mmn__admin_foreach_sub(bus->broker, client_id, pid, list_sub_cb, w);
}

static int method_list_subscriptions(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	uint64_t client_id;
	uint32_t pid;
	int r;

	r = sd_bus_message_read(m, "tu", &client_id, &pid);
	if (r < 0)
		return r;
	if (pid > INT32_MAX)
		return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid pid %" PRIu32, pid);
	r = check_access(bus, m, false, error);
	if (r < 0)
		return r;
	return reply_array(bus, m, "(ttuttuttu)", walk_subs, client_id, (pid_t)pid);
}

static int method_get_stats(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	sd_bus_message *reply = NULL;
	struct admin_stats st;
	int r;

	r = check_access(bus, m, false, error);
	if (r < 0)
		return r;
	mmn__admin_stats(bus->broker, &st);
	r = sd_bus_message_new_method_return(m, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_open_container(reply, 'a', "{st}");
	for (size_t i = 0; r >= 0 && i < N_ELEMS(stat_keys); i++)
		r = sd_bus_message_append(reply, "{st}", stat_keys[i].key,
					  *(const uint64_t *)((const char *)&st + stat_keys[i].off));
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	sd_bus_message_unref(reply);
	return r;
}

static int method_evict_client(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	uint64_t id;
	int r;

	r = sd_bus_message_read(m, "t", &id);
	if (r < 0)
		return r;
	r = check_access(bus, m, true, error);
	if (r < 0)
		return r;
	r = mmn__admin_evict(bus->broker, id);
	if (r == -ENOENT)
		return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_CLIENT, "No client with id %" PRIu64, id);
	if (r < 0)
		return sd_bus_error_set_errnof(error, -r, "Failed to evict client %" PRIu64 ": %s", id,
					       strerror(-r));
	return sd_bus_reply_method_return(m, NULL);
}

static int default_index(const char *key)
{
	for (size_t i = 0; i < N_ELEMS(default_keys); i++)
		if (strcmp(default_keys[i].key, key) == 0)
			return (int)i;
	return -1;
}

static int emit_defaults_changed(struct bus *bus)
{
	return sd_bus_emit_properties_changed(bus->uv.sd, BUS_PATH, BUS_IFACE, "DefaultAckTimeoutMSec",
					      "AckCapMSec", "MaxClients", "MaxSubscriptionsPerClient",
					      "MaxQueuedEvents", "MaxClientsPerUid", "MaxSubscriptionsPerUid",
					      "HelloTimeoutMSec", NULL);
}

/* Parse a{sv} into @d (pre-filled with the current values). */
static int read_defaults(sd_bus_message *m, struct admin_defaults *d, sd_bus_error *error)
{
	const char *key;
	uint32_t v, max;
	int r, i;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			return r;
		i = default_index(key);
		if (i < 0)
			return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown setting \"%s\"",
						 key);
		r = sd_bus_message_read(m, "v", "u", &v);
		if (r < 0)
			return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
						 "Setting \"%s\" must be a variant of type u", key);
		max = mmn__broker_option_bound(default_keys[i].option)->max;
		if (mmn__option_check_u32(v, 1, max) < 0)
			return sd_bus_error_setf(error, BUS_ERROR_INVALID_VALUE,
						 "%s is out of range: it must be between 1 and %" PRIu32
						 ", not %" PRIu32 "; nothing was changed",
						 key, max, v);
		*(uint32_t *)((char *)d + default_keys[i].off) = v;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

static int method_set_defaults(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	struct admin_defaults d;
	int r;

	r = check_access(bus, m, true, error);
	if (r < 0)
		return r;
	mmn__admin_get_defaults(bus->broker, &d);
	r = read_defaults(m, &d, error);
	if (r < 0)
		return r;
	r = mmn__admin_set_defaults(bus->broker, &d);
	if (r == -EINVAL)
		return sd_bus_error_setf(
			error, BUS_ERROR_INVALID_VALUE,
			d.ack_timeout_ms > d.ack_cap_ms
				? "DefaultAckTimeoutMSec must not exceed AckCapMSec; nothing was changed"
				: "A value is out of range; nothing was changed");
	if (r < 0)
		return sd_bus_error_set_errnof(error, -r, "Failed to set defaults: %s", strerror(-r));
	r = emit_defaults_changed(bus);
	warn_emit(bus, r, "PropertiesChanged");
	return sd_bus_reply_method_return(m, NULL);
}

static int method_reload(sd_bus_message *m, void *ud, sd_bus_error *error)
{
	struct bus *bus = ud;
	char why[512];
	int r;

	r = check_access(bus, m, true, error);
	if (r < 0)
		return r;
	r = mmn__admin_reload(bus->broker, why, sizeof(why));
	if (r < 0)
		return sd_bus_error_setf(error, BUS_ERROR_RELOAD_FAILED, "%s; nothing was changed",
					 why[0] ? why : strerror(-r));
	r = emit_defaults_changed(bus);
	warn_emit(bus, r, "PropertiesChanged");
	return sd_bus_reply_method_return(m, NULL);
}

#define STAT_PROP(name)	   SD_BUS_PROPERTY(name, "t", prop_stat, 0, 0)
#define DEFAULT_PROP(name) SD_BUS_PROPERTY(name, "u", prop_default, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable manager_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Version", "s", prop_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Source", "s", prop_source, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("SourceEventMask", "t", prop_source, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("AcksHoldKernel", "b", prop_source, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Clients", "t", prop_stat, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	STAT_PROP("Subscriptions"),
	STAT_PROP("KernelSubscriptions"),
	STAT_PROP("Invalidations"),
	STAT_PROP("BlockingAcks"),
	STAT_PROP("Timeouts"),
	STAT_PROP("Evictions"),
	STAT_PROP("NonBlockableRefusals"),
	STAT_PROP("QueueOverflows"),
	STAT_PROP("ProtocolErrors"),
	STAT_PROP("ImpliedEnds"),
	STAT_PROP("EndTimeouts"),
	DEFAULT_PROP("DefaultAckTimeoutMSec"),
	DEFAULT_PROP("AckCapMSec"),
	DEFAULT_PROP("MaxClients"),
	DEFAULT_PROP("MaxSubscriptionsPerClient"),
	DEFAULT_PROP("MaxQueuedEvents"),
	DEFAULT_PROP("MaxClientsPerUid"),
	DEFAULT_PROP("MaxSubscriptionsPerUid"),
	DEFAULT_PROP("HelloTimeoutMSec"),
	SD_BUS_METHOD_WITH_NAMES("ListClients", NULL, , "a(tuussuut)", SD_BUS_PARAM(clients),
				 method_list_clients, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("ListSubscriptions", "tu", SD_BUS_PARAM(client_id) SD_BUS_PARAM(pid),
				 "a(ttuttuttu)", SD_BUS_PARAM(subscriptions), method_list_subscriptions,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("GetStats", NULL, , "a{st}", SD_BUS_PARAM(stats), method_get_stats,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("GetClientHistograms", NULL, , "a(tuusa(tt)tt)", SD_BUS_PARAM(clients),
				 method_get_client_histograms, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("EvictClient", "t", SD_BUS_PARAM(client_id), NULL, , method_evict_client,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("SetDefaults", "a{sv}", SD_BUS_PARAM(settings), NULL, , method_set_defaults,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("Reload", NULL, NULL, method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_SIGNAL_WITH_NAMES(
		"ClientConnected", "tuus",
		SD_BUS_PARAM(client_id) SD_BUS_PARAM(pid) SD_BUS_PARAM(uid) SD_BUS_PARAM(name), 0),
	SD_BUS_SIGNAL_WITH_NAMES("ClientDisconnected", "t", SD_BUS_PARAM(client_id), 0),
	SD_BUS_SIGNAL_WITH_NAMES("ClientEvicted", "ts", SD_BUS_PARAM(client_id) SD_BUS_PARAM(reason), 0),
	SD_BUS_SIGNAL_WITH_NAMES("SourceChanged", "s", SD_BUS_PARAM(source), 0),
	SD_BUS_SIGNAL_WITH_NAMES("InvalidationSampled", "uttubutt",
				 SD_BUS_PARAM(pid) SD_BUS_PARAM(start) SD_BUS_PARAM(end) SD_BUS_PARAM(event)
					 SD_BUS_PARAM(blockable) SD_BUS_PARAM(clients)
						 SD_BUS_PARAM(latency_usec) SD_BUS_PARAM(suppressed),
				 0),
	SD_BUS_VTABLE_END};

/* Broker observer: signals.  Failures to emit are logged, never fatal. */

static void on_client_connected(void *ud, const struct admin_client *c)
{
	struct bus *bus = ud;

	if (bus->uv.dead)
		return;
	warn_emit(bus,
		  sd_bus_emit_signal(bus->uv.sd, BUS_PATH, BUS_IFACE, "ClientConnected", "tuus", c->id,
				     (uint32_t)c->pid, (uint32_t)c->uid, c->name ? c->name : ""),
		  "ClientConnected");
	warn_emit(bus, sd_bus_emit_properties_changed(bus->uv.sd, BUS_PATH, BUS_IFACE, "Clients", NULL),
		  "PropertiesChanged");
}

static void on_client_disconnected(void *ud, uint64_t id)
{
	struct bus *bus = ud;

	if (bus->uv.dead)
		return;
	warn_emit(bus, sd_bus_emit_signal(bus->uv.sd, BUS_PATH, BUS_IFACE, "ClientDisconnected", "t", id),
		  "ClientDisconnected");
	warn_emit(bus, sd_bus_emit_properties_changed(bus->uv.sd, BUS_PATH, BUS_IFACE, "Clients", NULL),
		  "PropertiesChanged");
}

static void on_client_evicted(void *ud, uint64_t id, const char *reason)
{
	struct bus *bus = ud;

	if (bus->uv.dead)
		return;
	warn_emit(bus,
		  sd_bus_emit_signal(bus->uv.sd, BUS_PATH, BUS_IFACE, "ClientEvicted", "ts", id,
				     reason ? reason : ""),
		  "ClientEvicted");
}

static void on_source_changed(void *ud, const char *source)
{
	struct bus *bus = ud;

	if (bus->uv.dead)
		return;
	warn_emit(bus,
		  sd_bus_emit_signal(bus->uv.sd, BUS_PATH, BUS_IFACE, "SourceChanged", "s",
				     source ? source : ""),
		  "SourceChanged");
	warn_emit(bus,
		  sd_bus_emit_properties_changed(bus->uv.sd, BUS_PATH, BUS_IFACE, "Source", "SourceEventMask",
						 "AcksHoldKernel", NULL),
		  "PropertiesChanged");
}

/*
 * Called on the broker's hot path: at most SAMPLE_PER_SEC signals per
 * one-second window of the loop clock; the next signal sent counts what was
 * dropped in between.
 */
static void on_invalidation(void *ud, const struct admin_invalidation *inv)
{
	struct bus *bus = ud;
	uint64_t now = uv_now(bus->loop);
	int r;

	if (bus->uv.dead)
		return;
	if (now - bus->sample_window >= 1000) {
		bus->sample_window = now;
		bus->samples = 0;
	}
	if (bus->samples >= SAMPLE_PER_SEC) {
		bus->suppressed++;
		return;
	}
	r = sd_bus_emit_signal(bus->uv.sd, BUS_PATH, BUS_IFACE, "InvalidationSampled", "uttubutt",
			       (uint32_t)inv->target_pid, inv->start, inv->end, inv->event,
			       (int)inv->blockable, inv->clients, inv->latency_us, bus->suppressed);
	if (r < 0) {
		bus->suppressed++;
		return;
	}
	bus->samples++;
	bus->suppressed = 0;
}

static void bus_free(struct bus_uv *u)
{
	free((struct bus *)((char *)u - offsetof(struct bus, uv)));
}

/* The group whose members may read: $MMN_ADMIN_GROUP (name or gid), else "mmn". */
static void resolve_read_group(struct bus *bus)
{
	const char *name = getenv("MMN_ADMIN_GROUP");
	struct group *g;
	char *end;
	unsigned long gid;

	if (!name || !*name)
		name = "mmn";
	errno = 0;
	gid = strtoul(name, &end, 10);
	if (!*end && !errno && gid < (gid_t)-1) {
		bus->read_gid = (gid_t)gid;
		bus->have_read_gid = true;
		return;
	}
	g = getgrnam(name);
	if (!g) {
		mmn__log(LOG_WARNING, NULL, "Group \"%s\" does not exist; D-Bus reads are for root only",
			 name);
		return;
	}
	bus->read_gid = g->gr_gid;
	bus->have_read_gid = true;
}

static int connect_bus(enum bus_kind kind, const char *address, sd_bus **out)
{
	sd_bus *sd = NULL;
	int r;

	switch (kind) {
	case BUS_SYSTEM:
		return sd_bus_open_system_with_description(out, "mmnd");
	case BUS_SESSION:
		return sd_bus_open_user_with_description(out, "mmnd");
	case BUS_ADDRESS:
		if (!address)
			return -EINVAL;
		r = sd_bus_new(&sd);
		if (r < 0)
			return r;
		r = sd_bus_set_address(sd, address);
		if (r >= 0)
			r = sd_bus_set_bus_client(sd, 1);
		if (r >= 0)
			r = sd_bus_set_description(sd, "mmnd");
		if (r >= 0)
			r = sd_bus_start(sd);
		if (r < 0) {
			sd_bus_unref(sd);
			return r;
		}
		*out = sd;
		return 0;
	default:
		return -EINVAL;
	}
}

static const struct admin_observer observer_template = {
	.client_connected = on_client_connected,
	.client_disconnected = on_client_disconnected,
	.client_evicted = on_client_evicted,
	.source_changed = on_source_changed,
	.invalidation = on_invalidation,
};

int mmn__bus_open(uv_loop_t *loop, struct broker *b, enum bus_kind kind, const char *address,
		  struct bus **out)
{
	struct admin_observer obs = observer_template;
	sd_bus *sd = NULL;
	struct bus *bus;
	int r;

	*out = NULL;
	if (kind == BUS_NONE)
		return 0;
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	bus->loop = loop;
	bus->broker = b;
	bus->sample_window = uv_now(loop);
	bus->emit_rl = (struct ratelimit)RATELIMIT_INIT(60000, 5);
	resolve_read_group(bus);

	r = connect_bus(kind, address, &sd);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to connect to the %s bus: %s",
			 kind == BUS_SYSTEM    ? "system"
			 : kind == BUS_SESSION ? "session"
					       : address,
			 strerror(-r));
		goto err_free;
	}
	r = sd_bus_add_object_vtable(sd, NULL, BUS_PATH, BUS_IFACE, manager_vtable, bus);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to add the D-Bus object: %s", strerror(-r));
		goto err_unref;
	}
	/* Synchronous: mmnd reports READY only once it owns the name. */
	r = sd_bus_request_name(sd, BUS_NAME, 0);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to acquire D-Bus name %s: %s", BUS_NAME, strerror(-r));
		goto err_unref;
	}
	r = mmn__bus_uv_attach(&bus->uv, loop, sd, bus_free);
	if (r < 0)
		goto err_unref;

	obs.ud = bus;
	mmn__admin_set_observer(b, &obs);
	*out = bus;
	return 0;

err_unref:
	sd_bus_flush_close_unref(sd);
err_free:
	free(bus);
	return r;
}

void mmn__bus_close(struct bus *bus)
{
	if (!bus)
		return;
	mmn__admin_set_observer(bus->broker, NULL);
	sd_bus_flush_close_unref(bus->uv.sd);
	mmn__bus_uv_detach(&bus->uv);
}
