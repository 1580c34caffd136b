/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mmnctl monitor: print the broker's signals as they arrive. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "mmnctl.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

/* The arguments of one of mmnd's signals (zero where the signal has none). */
struct signal_args {
	uint64_t id, start, end, latency, suppressed;
	uint32_t pid, uid, event, clients;
	const char *s;
	int blockable;
};

/* Reads @m's arguments by its member; false for a signal monitor does not show. */
static bool monitor_read(sd_bus_message *m, const char *member, struct signal_args *a)
{
	*a = (struct signal_args){.s = ""};
	if (strcmp(member, "ClientConnected") == 0)
		(void)sd_bus_message_read(m, "tuus", &a->id, &a->pid, &a->uid, &a->s);
	else if (strcmp(member, "ClientDisconnected") == 0)
		(void)sd_bus_message_read(m, "t", &a->id);
	else if (strcmp(member, "ClientEvicted") == 0)
		(void)sd_bus_message_read(m, "ts", &a->id, &a->s);
	else if (strcmp(member, "SourceChanged") == 0)
		(void)sd_bus_message_read(m, "s", &a->s);
	else if (strcmp(member, "InvalidationSampled") == 0)
		(void)sd_bus_message_read(m, "uttubutt", &a->pid, &a->start, &a->end, &a->event, &a->blockable,
					  &a->clients, &a->latency, &a->suppressed);
	else
		return false;
	return true;
}

/* One compact document per line (JSON Lines), whatever --json says. */
static void monitor_json(const char *member, const struct signal_args *a)
{
	struct json j;

	json_init(&j, stdout, false);
	json_begin_object(&j);
	json_key(&j, "signal");
	json_string(&j, member);
	if (strcmp(member, "SourceChanged") == 0) {
		json_key(&j, "source");
		json_string(&j, a->s);
	} else if (strcmp(member, "InvalidationSampled") == 0) {
		json_key(&j, "pid");
		json_u64(&j, a->pid);
		json_key(&j, "start");
		json_u64(&j, a->start);
		json_key(&j, "end");
		json_u64(&j, a->end);
		json_key(&j, "event");
		json_u64(&j, a->event);
		json_key(&j, "blockable");
		json_bool(&j, a->blockable);
		json_key(&j, "clients");
		json_u64(&j, a->clients);
		json_key(&j, "latency_usec");
		json_u64(&j, a->latency);
		json_key(&j, "suppressed");
		json_u64(&j, a->suppressed);
	} else {
		json_key(&j, "client_id");
		json_u64(&j, a->id);
		if (strcmp(member, "ClientConnected") == 0) {
			json_key(&j, "pid");
			json_u64(&j, a->pid);
			json_key(&j, "uid");
			json_u64(&j, a->uid);
			json_key(&j, "name");
			json_string(&j, a->s);
		} else if (strcmp(member, "ClientEvicted") == 0) {
			json_key(&j, "reason");
			json_string(&j, a->s);
		}
	}
	json_end_object(&j);
	json_finish(&j);
}

static void monitor_text(const char *member, const struct signal_args *a)
{
	if (strcmp(member, "ClientConnected") == 0)
		printf("client %" PRIu64 " connected: pid %" PRIu32 " uid %" PRIu32 " \"%s\"\n", a->id, a->pid,
		       a->uid, a->s);
	else if (strcmp(member, "ClientDisconnected") == 0)
		printf("client %" PRIu64 " disconnected\n", a->id);
	else if (strcmp(member, "ClientEvicted") == 0)
		printf("client %" PRIu64 " evicted: %s\n", a->id, a->s);
	else if (strcmp(member, "SourceChanged") == 0)
		printf("source changed: %s\n", a->s);
	else
		printf("invalidation pid %" PRIu32 " 0x%" PRIx64 "-0x%" PRIx64 " %s%s, %" PRIu32
		       " client%s, %" PRIu64 " us%s\n",
		       a->pid, a->start, a->end, a->event < n_event_names ? event_names[a->event] : "?",
		       a->blockable ? " blockable" : "", a->clients, a->clients == 1 ? "" : "s", a->latency,
		       a->suppressed ? " (earlier samples suppressed)" : "");
	fflush(stdout);
}

static void monitor_print(sd_bus_message *m)
{
	const char *member = sd_bus_message_get_member(m);
	struct signal_args a;

	if (!monitor_read(m, member, &a))
		return;
	if (arg_json != JSON_OFF)
		monitor_json(member, &a);
	else
		monitor_text(member, &a);
}

int verb_monitor(sd_bus *bus, int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sd_bus_message *m = NULL;
	const char *owner;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	r = sd_bus_match_signal(bus, NULL, BUS_NAME, BUS_PATH, BUS_IFACE, NULL, NULL, NULL);
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to subscribe to mmnd's signals: %s\n", strerror(-r));
		return -1;
	}
	/* Fail early, with the usual message, when mmnd is not there. */
	r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
			       "GetNameOwner", &e, &m, "s", BUS_NAME);
	if (r < 0) {
		r = ctl_bus_failure(&e, r, "find mmnd");
		sd_bus_error_free(&e);
		return r;
	}
	if (sd_bus_message_read(m, "s", &owner) > 0 && arg_json == JSON_OFF && arg_legend)
		printf("Monitoring %s (%s); press Ctrl-C to stop.\n", BUS_NAME, owner);
	fflush(stdout);
	m = sd_bus_message_unref(m);

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!stop) {
		r = sd_bus_process(bus, &m);
		if (r < 0) {
			if (r == -EINTR)
				continue;
			fprintf(stderr, "mmnctl: lost the bus connection: %s\n", strerror(-r));
			return -1;
		}
		if (m) {
			if (sd_bus_message_is_signal(m, BUS_IFACE, NULL))
				monitor_print(m);
			m = sd_bus_message_unref(m);
		}
		if (r > 0)
			continue;
		r = sd_bus_wait(bus, UINT64_MAX);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "mmnctl: failed to wait for signals: %s\n", strerror(-r));
			return -1;
		}
	}
	return 0;
}
