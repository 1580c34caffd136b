/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mmnctl status. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmnctl.h"

struct prop {
	const char *name;
	char type; /* 's', 't', 'u' or 'b' */
	char *s;
	uint64_t v;
	bool present;
};

static struct prop props[] = {
	{.name = "Version", .type = 's'},
	{.name = "Source", .type = 's'},
	{.name = "SourceEventMask", .type = 't'},
	{.name = "AcksHoldKernel", .type = 'b'},
	{.name = "Clients", .type = 't'},
	{.name = "Subscriptions", .type = 't'},
	{.name = "KernelSubscriptions", .type = 't'},
	{.name = "Invalidations", .type = 't'},
	{.name = "BlockingAcks", .type = 't'},
	{.name = "Timeouts", .type = 't'},
	{.name = "Evictions", .type = 't'},
	{.name = "NonBlockableRefusals", .type = 't'},
	{.name = "QueueOverflows", .type = 't'},
	{.name = "ProtocolErrors", .type = 't'},
	{.name = "ImpliedEnds", .type = 't'},
	{.name = "EndTimeouts", .type = 't'},
	{.name = "DefaultAckTimeoutMSec", .type = 'u'},
	{.name = "AckCapMSec", .type = 'u'},
	{.name = "MaxClients", .type = 'u'},
	{.name = "MaxSubscriptionsPerClient", .type = 'u'},
	{.name = "MaxQueuedEvents", .type = 'u'},
	{.name = "MaxClientsPerUid", .type = 'u'},
	{.name = "MaxSubscriptionsPerUid", .type = 'u'},
	{.name = "HelloTimeoutMSec", .type = 'u'},
};

#define N_PROPS (sizeof(props) / sizeof(props[0]))

static struct prop *find_prop(const char *name)
{
	for (size_t i = 0; i < N_PROPS; i++)
		if (strcmp(props[i].name, name) == 0)
			return &props[i];
	return NULL;
}

static int read_prop(sd_bus_message *m, struct prop *p)
{
	const char *s;
	uint32_t u;
	int b, r;

	switch (p->type) {
	case 's':
		r = sd_bus_message_read(m, "v", "s", &s);
		if (r >= 0) {
			free(p->s);
			p->s = strdup(s);
			if (!p->s)
				return -ENOMEM;
		}
		break;
	case 't':
		r = sd_bus_message_read(m, "v", "t", &p->v);
		break;
	case 'u':
		r = sd_bus_message_read(m, "v", "u", &u);
		p->v = u;
		break;
	default:
		r = sd_bus_message_read(m, "v", "b", &b);
		p->v = !!b;
	}
	if (r >= 0)
		p->present = true;
	return r;
}

static int fetch_props(sd_bus *bus)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *name;
	int r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll", &e,
			       &reply, "s", BUS_IFACE);
	if (r < 0) {
		r = ctl_bus_failure(&e, r, "read mmnd's properties");
		sd_bus_error_free(&e);
		return r;
	}
	r = sd_bus_message_enter_container(reply, 'a', "{sv}");
	while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
		struct prop *p;

		r = sd_bus_message_read(reply, "s", &name);
		if (r < 0)
			break;
		p = find_prop(name);
		/* Properties a newer mmnd adds are skipped. */
		r = p ? read_prop(reply, p) : sd_bus_message_skip(reply, "v");
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
	}
	sd_bus_message_unref(reply);
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to parse mmnd's properties: %s\n", strerror(-r));
		return -1;
	}
	return 0;
}

const char *const event_names[] = {
	"unmap",   "clear",	"protection-vma", "protection-page", "soft-dirty", "release",
	"migrate", "exclusive", "remove",	  "remap",	     "resync",
};

const size_t n_event_names = sizeof(event_names) / sizeof(event_names[0]);

static void print_event_mask(uint64_t mask)
{
	bool first = true;

	printf("0x%" PRIx64, mask);
	for (size_t i = 0; i < n_event_names; i++) {
		if (!(mask & (UINT64_C(1) << i)))
			continue;
		printf("%s%s", first ? " (" : " ", event_names[i]);
		first = false;
	}
	if (!first)
		putchar(')');
	putchar('\n');
}

static void status_json(void)
{
	struct json j;
	char key[64];

	ctl_json_begin(&j);
	json_begin_object(&j);
	for (size_t i = 0; i < N_PROPS; i++) {
		struct prop *p = &props[i];

		if (!p->present)
			continue;
		json_snake_case(p->name, key, sizeof(key));
		json_key(&j, key);
		if (p->type == 's')
			json_string(&j, p->s);
		else if (p->type == 'b')
			json_bool(&j, p->v);
		else
			json_u64(&j, p->v);
	}
	json_end_object(&j);
	json_finish(&j);
}

#define P(name) (find_prop(name)->v)

#define LABEL  "%22s: "
#define INDENT "                        "

static void status_human(void)
{
	const char *source = find_prop("Source")->s, *version = find_prop("Version")->s;

	printf(LABEL "%s\n", "Version", version ? version : "?");
	printf(LABEL "%s%s\n", "Source", source ? source : "?",
	       P("AcksHoldKernel") ? " (acks hold the kernel)" : " (acks do not hold the kernel)");
	if (source && strcmp(source, "uffd") == 0)
		printf(LABEL "mmn.ko is not loaded; the userfaultfd source sees only\n" INDENT
			     "unmap, MADV_DONTNEED/REMOVE, mremap and fork of a client's\n" INDENT
			     "own memory, after the fact (modprobe mmn, restart mmnd)\n",
		       "Note");
	else if (source && strcmp(source, "none") == 0)
		printf(LABEL "the event source went away (mmn.ko unloaded?); every\n" INDENT
			     "subscription was revoked\n",
		       "Note");
	else if (source && strcmp(source, "test") == 0)
		printf(LABEL "test source: events are synthetic\n", "Note");
	printf(LABEL, "Events");
	print_event_mask(P("SourceEventMask"));
	printf(LABEL "%" PRIu64 " (max %" PRIu64 ")\n", "Clients", P("Clients"), P("MaxClients"));
	printf(LABEL "%" PRIu64 " (kernel: %" PRIu64 ", max %" PRIu64 " per client)\n", "Subscriptions",
	       P("Subscriptions"), P("KernelSubscriptions"), P("MaxSubscriptionsPerClient"));
	printf(LABEL "%" PRIu64 "\n", "Invalidations", P("Invalidations"));
	printf(LABEL "%" PRIu64 "\n", "Blocking acks", P("BlockingAcks"));
	printf(LABEL "%" PRIu64 "/%" PRIu64 "\n", "Timeouts/evictions", P("Timeouts"), P("Evictions"));
	printf(LABEL "%" PRIu64 "\n", "Non-blockable refusals", P("NonBlockableRefusals"));
	printf(LABEL "%" PRIu64 "\n", "Queue overflows", P("QueueOverflows"));
	printf(LABEL "%" PRIu64 "\n", "Protocol errors", P("ProtocolErrors"));
	printf(LABEL "%" PRIu64 " implied by a later END, %" PRIu64 " by the END timer\n", "Lost ENDs",
	       P("ImpliedEnds"), P("EndTimeouts"));
	printf(LABEL "%" PRIu64 " ms (cap %" PRIu64 " ms)\n", "Ack timeout", P("DefaultAckTimeoutMSec"),
	       P("AckCapMSec"));
	printf(LABEL "%" PRIu64 "\n", "Queued events max", P("MaxQueuedEvents"));
	/* Absent from an older mmnd: nothing to show then. */
	if (find_prop("MaxClientsPerUid")->present)
		printf(LABEL "%" PRIu64 " clients, %" PRIu64 " subscriptions (root exempt)\n", "Per-uid max",
		       P("MaxClientsPerUid"), P("MaxSubscriptionsPerUid"));
	if (find_prop("HelloTimeoutMSec")->present)
		printf(LABEL "%" PRIu64 " ms\n", "Hello timeout", P("HelloTimeoutMSec"));
}

int verb_status(sd_bus *bus, int argc, char **argv)
{
	if (fetch_props(bus) < 0)
		return -1;
	if (arg_json != JSON_OFF)
		status_json();
	else
		status_human();
	return 0;
}
