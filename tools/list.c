/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mmnctl clients, mmnctl subscriptions. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mmnctl.h"

/* Start a listing: a JSON array, or the pager.  True when a table header is wanted. */
static bool list_begin(struct json *j)
{
	if (arg_json != JSON_OFF) {
		ctl_json_begin(j);
		json_begin_array(j);
		return false;
	}
	ctl_pager_open();
	return arg_legend;
}

/* End a listing of @n @noun(s); @r is the result of reading the reply. */
static int list_end(struct json *j, unsigned int n, const char *noun, int r)
{
	if (arg_json != JSON_OFF) {
		json_end_array(j);
		json_finish(j);
	} else if (arg_legend) {
		printf("\n%u %s%s listed.\n", n, noun, n == 1 ? "" : "s");
	}
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to parse the %s list: %s\n", noun, strerror(-r));
		return -1;
	}
	return 0;
}

int verb_clients(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	const char *name, *mode;
	uint32_t pid, uid, subs, pending;
	uint64_t id, evictions;
	struct json j;
	unsigned int n = 0;
	int r;

	if (ctl_call(bus, "ListClients", &reply, "list clients", NULL) < 0)
		return -1;
	r = sd_bus_message_enter_container(reply, 'a', "(tuussuut)");
	if (list_begin(&j))
		printf("%-6s %-8s %-6s %-8s %-12s %5s %7s %9s\n", "ID", "PID", "UID", "MODE", "NAME",
		       "SUBS", "PENDING", "EVICTIONS");
	while (r >= 0 && (r = sd_bus_message_read(reply, "(tuussuut)", &id, &pid, &uid, &name, &mode, &subs,
						  &pending, &evictions)) > 0) {
		n++;
		if (arg_json == JSON_OFF) {
			printf("%-6" PRIu64 " %-8" PRIu32 " %-6" PRIu32 " %-8s %-12s %5" PRIu32 " %7" PRIu32
			       " %9" PRIu64 "\n",
			       id, pid, uid, mode, *name ? name : "-", subs, pending, evictions);
			continue;
		}
		json_begin_object(&j);
		json_key(&j, "id");
		json_u64(&j, id);
		json_key(&j, "pid");
		json_u64(&j, pid);
		json_key(&j, "uid");
		json_u64(&j, uid);
		json_key(&j, "name");
		json_string(&j, name);
		json_key(&j, "mode");
		json_string(&j, mode);
		json_key(&j, "subscriptions");
		json_u64(&j, subs);
		json_key(&j, "pending_acks");
		json_u64(&j, pending);
		json_key(&j, "evictions");
		json_u64(&j, evictions);
		json_end_object(&j);
	}
	sd_bus_message_unref(reply);
	return list_end(&j, n, "client", r);
}

/* subscriptions */

static const char *flags_name(uint32_t flags)
{
	switch (flags) {
	case 1:
		return "blocking";
	case 2:
		return "nonblocking";
	default:
		return "?";
	}
}

int verb_subscriptions(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	uint64_t id, client, start, end, mask, seq;
	uint32_t pid, flags, ksub;
	struct json j;
	unsigned int n = 0;
	int r;

	if (ctl_call(bus, "ListSubscriptions", &reply, "list subscriptions", "tu", arg_client, arg_pid) < 0)
		return -1;
	r = sd_bus_message_enter_container(reply, 'a', "(ttuttuttu)");
	if (list_begin(&j))
		printf("%-6s %-6s %-8s %-18s %-18s %-11s %-10s %-8s %s\n", "ID", "CLIENT", "PID",
		       "START", "END", "MODE", "EVENTS", "SEQ", "KSUB");
	while (r >= 0 && (r = sd_bus_message_read(reply, "(ttuttuttu)", &id, &client, &pid, &start, &end,
						  &flags, &mask, &seq, &ksub)) > 0) {
		n++;
		if (arg_json == JSON_OFF) {
			printf("%-6" PRIu64 " %-6" PRIu64 " %-8" PRIu32 " 0x%016" PRIx64 " 0x%016" PRIx64
			       " %-11s 0x%-8" PRIx64 " %-8" PRIu64 " %" PRIu32 "\n",
			       id, client, pid, start, end, flags_name(flags), mask, seq, ksub);
			continue;
		}
		json_begin_object(&j);
		json_key(&j, "id");
		json_u64(&j, id);
		json_key(&j, "client_id");
		json_u64(&j, client);
		json_key(&j, "pid");
		json_u64(&j, pid);
		json_key(&j, "start");
		json_u64(&j, start);
		json_key(&j, "end");
		json_u64(&j, end);
		json_key(&j, "flags");
		json_u64(&j, flags);
		json_key(&j, "mode");
		json_string(&j, flags_name(flags));
		json_key(&j, "event_mask");
		json_u64(&j, mask);
		json_key(&j, "seq");
		json_u64(&j, seq);
		json_key(&j, "kernel_subscription");
		json_u64(&j, ksub);
		json_end_object(&j);
	}
	sd_bus_message_unref(reply);
	return list_end(&j, n, "subscription", r);
}
