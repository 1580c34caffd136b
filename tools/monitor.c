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

static void monitor_print(sd_bus_message *m)
{
	const char *member = sd_bus_message_get_member(m);
	uint64_t id = 0, start = 0, end = 0, latency = 0, suppressed = 0;
	uint32_t pid = 0, uid = 0, event = 0, clients = 0;
	const char *s = "";
	int blockable = 0;
	struct json j;

	if (strcmp(member, "ClientConnected") == 0)
		(void)sd_bus_message_read(m, "tuus", &id, &pid, &uid, &s);
	else if (strcmp(member, "ClientDisconnected") == 0)
		(void)sd_bus_message_read(m, "t", &id);
	else if (strcmp(member, "ClientEvicted") == 0)
		(void)sd_bus_message_read(m, "ts", &id, &s);
	else if (strcmp(member, "SourceChanged") == 0)
		(void)sd_bus_message_read(m, "s", &s);
	else if (strcmp(member, "InvalidationSampled") == 0)
		(void)sd_bus_message_read(m, "uttubutt", &pid, &start, &end, &event, &blockable, &clients,
					  &latency, &suppressed);
	else
		return;

	if (arg_json != JSON_OFF) {
		/* One compact document per line (JSON Lines), whatever --json says. */
		json_init(&j, stdout, false);
		json_begin_object(&j);
		json_key(&j, "signal");
		json_string(&j, member);
		if (strcmp(member, "SourceChanged") == 0) {
			json_key(&j, "source");
			json_string(&j, s);
		} else if (strcmp(member, "InvalidationSampled") == 0) {
			json_key(&j, "pid");
			json_u64(&j, pid);
			json_key(&j, "start");
			json_u64(&j, start);
			json_key(&j, "end");
			json_u64(&j, end);
			json_key(&j, "event");
			json_u64(&j, event);
			json_key(&j, "blockable");
			json_bool(&j, blockable);
			json_key(&j, "clients");
			json_u64(&j, clients);
			json_key(&j, "latency_usec");
			json_u64(&j, latency);
			json_key(&j, "suppressed");
			json_u64(&j, suppressed);
		} else {
			json_key(&j, "client_id");
			json_u64(&j, id);
			if (strcmp(member, "ClientConnected") == 0) {
				json_key(&j, "pid");
				json_u64(&j, pid);
				json_key(&j, "uid");
				json_u64(&j, uid);
				json_key(&j, "name");
				json_string(&j, s);
			} else if (strcmp(member, "ClientEvicted") == 0) {
				json_key(&j, "reason");
				json_string(&j, s);
			}
		}
		json_end_object(&j);
		json_finish(&j);
		return;
	}

	if (strcmp(member, "ClientConnected") == 0)
		printf("client %" PRIu64 " connected: pid %" PRIu32 " uid %" PRIu32 " \"%s\"\n", id, pid, uid,
		       s);
	else if (strcmp(member, "ClientDisconnected") == 0)
		printf("client %" PRIu64 " disconnected\n", id);
	else if (strcmp(member, "ClientEvicted") == 0)
		printf("client %" PRIu64 " evicted: %s\n", id, s);
	else if (strcmp(member, "SourceChanged") == 0)
		printf("source changed: %s\n", s);
	else
		printf("invalidation pid %" PRIu32 " 0x%" PRIx64 "-0x%" PRIx64 " %s%s, %" PRIu32
		       " client%s, %" PRIu64 " us%s\n",
		       pid, start, end, event < n_event_names ? event_names[event] : "?",
		       blockable ? " blockable" : "", clients, clients == 1 ? "" : "s", latency,
		       suppressed ? " (earlier samples suppressed)" : "");
	fflush(stdout);
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
