/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mmnctl evict, set-default, reload: root only. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mmnctl.h"

int verb_evict(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	uint64_t id;

	if (ctl_parse_u64(argv[1], &id) < 0 || id == 0)
		return ctl_usage_error("invalid client id \"%s\"", argv[1]);
	if (ctl_call(bus, "EvictClient", &reply, "evict the client", "t", id) < 0)
		return -1;
	sd_bus_message_unref(reply);
	return 0;
}

static const struct {
	const char *key;
	const char *property;
} default_keys[] = {
	{"ack-timeout-ms", "DefaultAckTimeoutMSec"},
	{"ack-cap-ms", "AckCapMSec"},
	{"max-clients", "MaxClients"},
	{"max-subs", "MaxSubscriptionsPerClient"},
	{"max-queued", "MaxQueuedEvents"},
	{"max-clients-per-uid", "MaxClientsPerUid"},
	{"max-subs-per-uid", "MaxSubscriptionsPerUid"},
	{"hello-timeout-ms", "HelloTimeoutMSec"},
};

static const char *default_property(const char *key, size_t len)
{
	for (size_t i = 0; i < sizeof(default_keys) / sizeof(default_keys[0]); i++)
		if ((strlen(default_keys[i].key) == len && strncmp(default_keys[i].key, key, len) == 0) ||
		    (strlen(default_keys[i].property) == len &&
		     strncmp(default_keys[i].property, key, len) == 0))
			return default_keys[i].property;
	return NULL;
}

int verb_set_default(sd_bus *bus, int argc, char **argv)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, BUS_IFACE, "SetDefaults");
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "{sv}");
	for (int i = 1; r >= 0 && i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		const char *prop = eq ? default_property(argv[i], (size_t)(eq - argv[i])) : NULL;
		uint64_t v;

		if (!prop || ctl_parse_u64(eq + 1, &v) < 0 || v > UINT32_MAX) {
			sd_bus_message_unref(m);
			return ctl_usage_error(
				"invalid setting \"%s\" (KEY=VALUE with KEY one of ack-timeout-ms, "
				"ack-cap-ms, max-clients, max-subs, max-queued, max-clients-per-uid, "
				"max-subs-per-uid, hello-timeout-ms)",
				argv[i]);
		}
		r = sd_bus_message_append(m, "{sv}", prop, "u", (uint32_t)v);
	}
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_call(bus, m, 0, &e, NULL);
	sd_bus_message_unref(m);
	if (r < 0)
		r = ctl_bus_failure(&e, r, "set defaults");
	sd_bus_error_free(&e);
	return r;
}

int verb_reload(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;

	if (ctl_call(bus, "Reload", &reply, "reload mmnd", NULL) < 0)
		return -1;
	sd_bus_message_unref(reply);
	return 0;
}
