/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnctl: inspect and control mmnd over its D-Bus API (org.mmn.Broker1,
 * man/org.mmn.Broker1.5).  Exit status: 0 success, 1 failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "json.h"

#ifndef MMN_VERSION
#define MMN_VERSION "unknown"
#endif

#define BUS_NAME "org.mmn.Broker1"
#define BUS_PATH "/org/mmn/Broker1"
#define BUS_IFACE "org.mmn.Broker1.Manager"

#define EXIT_USAGE 2

enum json_mode { JSON_OFF, JSON_SHORT, JSON_PRETTY };

static enum json_mode arg_json = JSON_OFF;
static bool arg_legend = true;
static bool arg_pager = true;
static const char *arg_bus;      /* NULL: $MMN_BUS_ADDRESS, else system */
static uint64_t arg_client;      /* subscriptions --client */
static uint32_t arg_pid;         /* subscriptions --pid */

static pid_t pager_pid;

/* A usage error: message, hint, exit 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("mmnctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'mmnctl --help' for more information.\n", stderr);
	return -EXIT_USAGE;
}

/* Pager: only on a terminal, only for table output, $PAGER or less. */

static void pager_open(void)
{
	const char *pager = getenv("PAGER");
	int fds[2];

	if (!arg_pager || arg_json != JSON_OFF || !isatty(STDOUT_FILENO))
		return;
	if (pager && (!*pager || strcmp(pager, "cat") == 0))
		return;
	if (pipe(fds) < 0)
		return;
	fflush(stdout);
	pager_pid = fork();
	if (pager_pid < 0) {
		pager_pid = 0;
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pager_pid == 0) {
		dup2(fds[0], STDIN_FILENO);
		close(fds[0]);
		close(fds[1]);
		/* -F: quit if one screen, -R: colours, -S: chop, -X: no init. */
		setenv("LESS", "FRSXMK", 0);
		if (pager)
			execl("/bin/sh", "sh", "-c", pager, (char *)NULL);
		execlp("less", "less", (char *)NULL);
		execlp("more", "more", (char *)NULL);
		_exit(EXIT_FAILURE);
	}
	dup2(fds[1], STDOUT_FILENO);
	close(fds[0]);
	close(fds[1]);
}

static void pager_close(void)
{
	if (!pager_pid)
		return;
	fflush(stdout);
	fclose(stdout);
	(void)waitpid(pager_pid, NULL, 0);
	pager_pid = 0;
}

/* Errors from the bus, turned into what an administrator can act on. */
static int bus_failure(const sd_bus_error *e, int r, const char *what)
{
	if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
	    sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
		fprintf(stderr,
			"mmnctl: mmnd is not running (nothing owns %s on this bus).\n"
			"Start it with: systemctl start mmnd.socket mmnd.service\n",
			BUS_NAME);
	else if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
		fprintf(stderr,
			"mmnctl: permission denied: %s.\n"
			"Reading needs root or membership in group mmn; changes need root.\n",
			e->message ? e->message : "access denied");
	else if (sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD) ||
		 sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
		 sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_INTERFACE))
		fprintf(stderr, "mmnctl: this mmnd does not offer %s (version mismatch?): %s\n", what,
			e->message ? e->message : e->name);
	else if (sd_bus_error_is_set(e))
		fprintf(stderr, "mmnctl: failed to %s: %s\n", what, e->message ? e->message : e->name);
	else
		fprintf(stderr, "mmnctl: failed to %s: %s\n", what, strerror(-r));
	return -1;
}

static int connect_bus(sd_bus **out)
{
	const char *where = arg_bus ? arg_bus : getenv("MMN_BUS_ADDRESS");
	sd_bus *bus = NULL;
	int r;

	if (!where || strcmp(where, "system") == 0) {
		r = sd_bus_open_system(&bus);
		where = "system";
	} else if (strcmp(where, "session") == 0 || strcmp(where, "user") == 0) {
		r = sd_bus_open_user(&bus);
	} else {
		r = sd_bus_new(&bus);
		if (r >= 0)
			r = sd_bus_set_address(bus, where);
		if (r >= 0)
			r = sd_bus_set_bus_client(bus, 1);
		if (r >= 0)
			r = sd_bus_start(bus);
	}
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to connect to the %s bus: %s\n", where, strerror(-r));
		sd_bus_unref(bus);
		return -1;
	}
	*out = bus;
	return 0;
}

/* Call a method on the manager; on failure print why and return -1. */
static int call(sd_bus *bus, const char *method, sd_bus_message **reply, const char *what, const char *types, ...)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	va_list ap;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, BUS_IFACE, method);
	if (r >= 0 && types) {
		va_start(ap, types);
		r = sd_bus_message_appendv(m, types, ap);
		va_end(ap);
	}
	if (r >= 0)
		r = sd_bus_call(bus, m, 0, &e, reply);
	sd_bus_message_unref(m);
	if (r < 0)
		r = bus_failure(&e, r, what);
	sd_bus_error_free(&e);
	return r;
}

static void json_begin(struct json *j)
{
	json_init(j, stdout, arg_json == JSON_PRETTY);
}

/* status */

struct prop {
	const char *name;
	char type;            /* 's', 't', 'u' or 'b' */
	char *s;
	uint64_t v;
	bool present;
};

static struct prop props[] = {
	{ .name = "Version", .type = 's' },
	{ .name = "Source", .type = 's' },
	{ .name = "SourceEventMask", .type = 't' },
	{ .name = "AcksHoldKernel", .type = 'b' },
	{ .name = "Clients", .type = 't' },
	{ .name = "Subscriptions", .type = 't' },
	{ .name = "KernelSubscriptions", .type = 't' },
	{ .name = "Invalidations", .type = 't' },
	{ .name = "BlockingAcks", .type = 't' },
	{ .name = "Timeouts", .type = 't' },
	{ .name = "Evictions", .type = 't' },
	{ .name = "NonBlockableRefusals", .type = 't' },
	{ .name = "QueueOverflows", .type = 't' },
	{ .name = "ProtocolErrors", .type = 't' },
	{ .name = "DefaultAckTimeoutMSec", .type = 'u' },
	{ .name = "AckCapMSec", .type = 'u' },
	{ .name = "MaxClients", .type = 'u' },
	{ .name = "MaxSubscriptionsPerClient", .type = 'u' },
	{ .name = "MaxQueuedEvents", .type = 'u' },
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

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll", &e, &reply,
			       "s", BUS_IFACE);
	if (r < 0) {
		r = bus_failure(&e, r, "read mmnd's properties");
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

static const char *const event_names[] = {
	"unmap", "clear", "protection-vma", "protection-page", "soft-dirty", "release",
	"migrate", "exclusive", "remove", "remap", "resync",
};

static void print_event_mask(uint64_t mask)
{
	bool first = true;

	printf("0x%" PRIx64, mask);
	for (size_t i = 0; i < sizeof(event_names) / sizeof(event_names[0]); i++) {
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

	json_begin(&j);
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

static void status_human(void)
{
	const char *source = find_prop("Source")->s;

	printf("              Version: %s\n", find_prop("Version")->s ? find_prop("Version")->s : "?");
	printf("               Source: %s%s\n", source ? source : "?",
	       P("AcksHoldKernel") ? " (acks hold the kernel)" : " (acks do not hold the kernel)");
	if (source && strcmp(source, "uffd") == 0)
		printf("                 Note: mmn.ko is not loaded; the userfaultfd source sees only\n"
		       "                       unmap, MADV_DONTNEED/REMOVE, mremap and fork of a client's\n"
		       "                       own memory, after the fact (modprobe mmn, then restart mmnd)\n");
	else if (source && strcmp(source, "test") == 0)
		printf("                 Note: test source: events are synthetic\n");
	printf("               Events: ");
	print_event_mask(P("SourceEventMask"));
	printf("              Clients: %" PRIu64 " (max %" PRIu64 ")\n", P("Clients"), P("MaxClients"));
	printf("        Subscriptions: %" PRIu64 " (kernel: %" PRIu64 ", max %" PRIu64 " per client)\n",
	       P("Subscriptions"), P("KernelSubscriptions"), P("MaxSubscriptionsPerClient"));
	printf("        Invalidations: %" PRIu64 "\n", P("Invalidations"));
	printf("        Blocking acks: %" PRIu64 "\n", P("BlockingAcks"));
	printf("    Timeouts/evictions: %" PRIu64 "/%" PRIu64 "\n", P("Timeouts"), P("Evictions"));
	printf("Non-blockable refusals: %" PRIu64 "\n", P("NonBlockableRefusals"));
	printf("      Queue overflows: %" PRIu64 "\n", P("QueueOverflows"));
	printf("      Protocol errors: %" PRIu64 "\n", P("ProtocolErrors"));
	printf("          Ack timeout: %" PRIu64 " ms (cap %" PRIu64 " ms)\n", P("DefaultAckTimeoutMSec"),
	       P("AckCapMSec"));
	printf("    Queued events max: %" PRIu64 "\n", P("MaxQueuedEvents"));
}

static int verb_status(sd_bus *bus, int argc, char **argv)
{
	if (fetch_props(bus) < 0)
		return -1;
	if (arg_json != JSON_OFF)
		status_json();
	else
		status_human();
	return 0;
}

/* clients */

static int verb_clients(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	const char *name, *mode;
	uint32_t pid, uid, subs, pending;
	uint64_t id, evictions;
	struct json j;
	unsigned int n = 0;
	int r;

	if (call(bus, "ListClients", &reply, "list clients", NULL) < 0)
		return -1;
	r = sd_bus_message_enter_container(reply, 'a', "(tuussuut)");
	if (arg_json != JSON_OFF) {
		json_begin(&j);
		json_begin_array(&j);
	} else {
		pager_open();
		if (arg_legend)
			printf("%-6s %-8s %-6s %-8s %-12s %5s %7s %9s\n", "ID", "PID", "UID", "MODE", "NAME", "SUBS",
			       "PENDING", "EVICTIONS");
	}
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
	if (arg_json != JSON_OFF) {
		json_end_array(&j);
		json_finish(&j);
	} else if (arg_legend) {
		printf("\n%u client%s listed.\n", n, n == 1 ? "" : "s");
	}
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to parse the client list: %s\n", strerror(-r));
		return -1;
	}
	return 0;
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

static int verb_subscriptions(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	uint64_t id, client, start, end, mask, seq;
	uint32_t pid, flags, ksub;
	struct json j;
	unsigned int n = 0;
	int r;

	if (call(bus, "ListSubscriptions", &reply, "list subscriptions", "tu", arg_client, arg_pid) < 0)
		return -1;
	r = sd_bus_message_enter_container(reply, 'a', "(ttuttuttu)");
	if (arg_json != JSON_OFF) {
		json_begin(&j);
		json_begin_array(&j);
	} else {
		pager_open();
		if (arg_legend)
			printf("%-6s %-6s %-8s %-18s %-18s %-11s %-10s %-8s %s\n", "ID", "CLIENT", "PID", "START",
			       "END", "MODE", "EVENTS", "SEQ", "KSUB");
	}
	while (r >= 0 && (r = sd_bus_message_read(reply, "(ttuttuttu)", &id, &client, &pid, &start, &end, &flags,
						  &mask, &seq, &ksub)) > 0) {
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
	if (arg_json != JSON_OFF) {
		json_end_array(&j);
		json_finish(&j);
	} else if (arg_legend) {
		printf("\n%u subscription%s listed.\n", n, n == 1 ? "" : "s");
	}
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to parse the subscription list: %s\n", strerror(-r));
		return -1;
	}
	return 0;
}

/* stats */

static int verb_stats(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	const char *key;
	uint64_t v;
	char snake[64];
	struct json j;
	int r;

	if (call(bus, "GetStats", &reply, "read statistics", NULL) < 0)
		return -1;
	r = sd_bus_message_enter_container(reply, 'a', "{st}");
	if (arg_json != JSON_OFF) {
		json_begin(&j);
		json_begin_object(&j);
	}
	while (r >= 0 && (r = sd_bus_message_read(reply, "{st}", &key, &v)) > 0) {
		if (arg_json == JSON_OFF) {
			printf("%22s: %" PRIu64 "\n", key, v);
			continue;
		}
		json_snake_case(key, snake, sizeof(snake));
		json_key(&j, snake);
		json_u64(&j, v);
	}
	sd_bus_message_unref(reply);
	if (arg_json != JSON_OFF) {
		json_end_object(&j);
		json_finish(&j);
	}
	if (r < 0) {
		fprintf(stderr, "mmnctl: failed to parse statistics: %s\n", strerror(-r));
		return -1;
	}
	return 0;
}

/* evict, set-default, reload */

static int parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int verb_evict(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;
	uint64_t id;

	if (parse_u64(argv[1], &id) < 0 || id == 0)
		return usage_error("invalid client id \"%s\"", argv[1]);
	if (call(bus, "EvictClient", &reply, "evict the client", "t", id) < 0)
		return -1;
	sd_bus_message_unref(reply);
	return 0;
}

static const struct {
	const char *key;
	const char *property;
} default_keys[] = {
	{ "ack-timeout-ms", "DefaultAckTimeoutMSec" },
	{ "ack-cap-ms", "AckCapMSec" },
	{ "max-clients", "MaxClients" },
	{ "max-subs", "MaxSubscriptionsPerClient" },
	{ "max-queued", "MaxQueuedEvents" },
};

static const char *default_property(const char *key, size_t len)
{
	for (size_t i = 0; i < sizeof(default_keys) / sizeof(default_keys[0]); i++)
		if ((strlen(default_keys[i].key) == len && strncmp(default_keys[i].key, key, len) == 0) ||
		    (strlen(default_keys[i].property) == len && strncmp(default_keys[i].property, key, len) == 0))
			return default_keys[i].property;
	return NULL;
}

static int verb_set_default(sd_bus *bus, int argc, char **argv)
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

		if (!prop || parse_u64(eq + 1, &v) < 0 || v > UINT32_MAX) {
			sd_bus_message_unref(m);
			return usage_error("invalid setting \"%s\" (KEY=VALUE with KEY one of ack-timeout-ms, "
					   "ack-cap-ms, max-clients, max-subs, max-queued)",
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
		r = bus_failure(&e, r, "set defaults");
	sd_bus_error_free(&e);
	return r;
}

static int verb_reload(sd_bus *bus, int argc, char **argv)
{
	sd_bus_message *reply = NULL;

	if (call(bus, "Reload", &reply, "reload mmnd", NULL) < 0)
		return -1;
	sd_bus_message_unref(reply);
	return 0;
}

/* monitor */

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
		(void)sd_bus_message_read(m, "uttubutt", &pid, &start, &end, &event, &blockable, &clients, &latency,
					  &suppressed);
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
		printf("client %" PRIu64 " connected: pid %" PRIu32 " uid %" PRIu32 " \"%s\"\n", id, pid, uid, s);
	else if (strcmp(member, "ClientDisconnected") == 0)
		printf("client %" PRIu64 " disconnected\n", id);
	else if (strcmp(member, "ClientEvicted") == 0)
		printf("client %" PRIu64 " evicted: %s\n", id, s);
	else if (strcmp(member, "SourceChanged") == 0)
		printf("source changed: %s\n", s);
	else
		printf("invalidation pid %" PRIu32 " 0x%" PRIx64 "-0x%" PRIx64 " %s%s, %" PRIu32
		       " client%s, %" PRIu64 " us%s\n",
		       pid, start, end, event < sizeof(event_names) / sizeof(event_names[0]) ? event_names[event] : "?",
		       blockable ? " blockable" : "", clients, clients == 1 ? "" : "s", latency,
		       suppressed ? " (earlier samples suppressed)" : "");
	fflush(stdout);
}

static int verb_monitor(sd_bus *bus, int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
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
		r = bus_failure(&e, r, "find mmnd");
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

/* Verbs: name, argument count (the verb included), handler. */
static const struct verb {
	const char *name;
	int min_args, max_args;
	bool reads;           /* a read command: --json applies */
	int (*fn)(sd_bus *bus, int argc, char **argv);
	const char *help;
} verbs[] = {
	{ "status", 1, 1, true, verb_status, "Show mmnd's source, counts and defaults (default)" },
	{ "clients", 1, 1, true, verb_clients, "List connected clients" },
	{ "subscriptions", 1, 1, true, verb_subscriptions, "List subscriptions [--client ID | --pid PID]" },
	{ "stats", 1, 1, true, verb_stats, "Show counters" },
	{ "evict", 2, 2, false, verb_evict, "Evict client ID (root)" },
	{ "set-default", 2, INT_MAX, false, verb_set_default, "Set KEY=VALUE... defaults (root)" },
	{ "reload", 1, 1, false, verb_reload, "Re-read configuration (root)" },
	{ "monitor", 1, 1, true, verb_monitor, "Print signals as they arrive" },
};

static void help(void)
{
	printf("mmnctl [OPTIONS...] COMMAND ...\n\n"
	       "Inspect and control the mmn broker (mmnd).\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		printf("  %-16s %s\n", verbs[i].name, verbs[i].help);
	printf("\nOptions:\n"
	       "  -h --help            Show this help\n"
	       "     --version         Show the version\n"
	       "     --json=MODE       Output JSON: pretty, short or off\n"
	       "  -j                   Same as --json=pretty on a terminal, --json=short otherwise\n"
	       "     --no-legend       Do not print headers and footers\n"
	       "     --no-pager        Do not pipe output into a pager\n"
	       "     --bus=BUS         system (default), session or an sd-bus ADDRESS\n"
	       "     --client=ID       subscriptions: only those of client ID\n"
	       "     --pid=PID         subscriptions: only those on target PID\n"
	       "\nKeys for set-default: ack-timeout-ms, ack-cap-ms, max-clients, max-subs, max-queued.\n"
	       "Exit status: 0 success, 1 failure, 2 usage error.\n"
	       "\nSee the mmnctl(1) man page for details.\n");
}

enum { ARG_VERSION = 0x100, ARG_JSON, ARG_NO_LEGEND, ARG_NO_PAGER, ARG_BUS, ARG_CLIENT, ARG_PID };

static int parse_argv(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, ARG_VERSION },
		{ "json", required_argument, NULL, ARG_JSON },
		{ "no-legend", no_argument, NULL, ARG_NO_LEGEND },
		{ "no-pager", no_argument, NULL, ARG_NO_PAGER },
		{ "bus", required_argument, NULL, ARG_BUS },
		{ "client", required_argument, NULL, ARG_CLIENT },
		{ "pid", required_argument, NULL, ARG_PID },
		{}
	};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "hj", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("mmnctl %s\n", MMN_VERSION);
			return 0;
		case 'j':
			arg_json = isatty(STDOUT_FILENO) ? JSON_PRETTY : JSON_SHORT;
			break;
		case ARG_JSON:
			if (strcmp(optarg, "pretty") == 0)
				arg_json = JSON_PRETTY;
			else if (strcmp(optarg, "short") == 0)
				arg_json = JSON_SHORT;
			else if (strcmp(optarg, "off") == 0)
				arg_json = JSON_OFF;
			else
				return usage_error("unknown --json mode \"%s\" (pretty, short or off)", optarg);
			break;
		case ARG_NO_LEGEND:
			arg_legend = false;
			break;
		case ARG_NO_PAGER:
			arg_pager = false;
			break;
		case ARG_BUS:
			arg_bus = optarg;
			break;
		case ARG_CLIENT:
			if (parse_u64(optarg, &v) < 0 || v == 0)
				return usage_error("invalid client id \"%s\"", optarg);
			arg_client = v;
			break;
		case ARG_PID:
			if (parse_u64(optarg, &v) < 0 || v == 0 || v > INT32_MAX)
				return usage_error("invalid pid \"%s\"", optarg);
			arg_pid = (uint32_t)v;
			break;
		default:
			return -EXIT_USAGE;
		}
	}
	return 1;
}

int main(int argc, char **argv)
{
	static char *default_argv[] = { "status", NULL };
	const struct verb *v = NULL;
	sd_bus *bus = NULL;
	char **vargv;
	int vargc, r;

	r = parse_argv(argc, argv);
	if (r <= 0)
		return r == 0 ? EXIT_SUCCESS : -r;

	vargc = argc - optind;
	vargv = argv + optind;
	if (vargc == 0) {
		vargc = 1;
		vargv = default_argv;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verbs[i].name, vargv[0]) == 0)
			v = &verbs[i];
	if (!v)
		return -usage_error("unknown command \"%s\"", vargv[0]);
	if (vargc < v->min_args)
		return -usage_error("too few arguments for \"%s\"", v->name);
	if (vargc > v->max_args)
		return -usage_error("too many arguments for \"%s\"", v->name);
	if ((arg_client || arg_pid) && v->fn != verb_subscriptions)
		return -usage_error("--client and --pid apply to \"subscriptions\" only");
	if (arg_client && arg_pid)
		return -usage_error("--client and --pid are mutually exclusive");
	if (arg_json != JSON_OFF && !v->reads)
		return -usage_error("--json applies to read commands only");

	if (connect_bus(&bus) < 0)
		return EXIT_FAILURE;
	r = v->fn(bus, vargc, vargv);
	pager_close();
	sd_bus_flush_close_unref(bus);
	if (r == -EXIT_USAGE)
		return EXIT_USAGE;
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
