/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * org.mmn.Broker1 over a private dbus-daemon, served by daemon/dbus.c in
 * front of a scripted broker (fake-broker): introspection, every property,
 * method and signal, error names, the InvalidationSampled rate limit, and
 * the credential checks (another uid may read only in the admin group and
 * may never change anything).
 *
 *   test-admin-dbus FAKE-BROKER [MAN-PAGE]
 *
 * With MAN-PAGE (man/org.mmn.Broker1.5), its interface block and the
 * introspection data must name the same methods, signals and properties.
 */
#include <grp.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "tap.h"
#include "bus-harness.h"

#define BUS_NAME  "org.mmn.Broker1"
#define BUS_PATH  "/org/mmn/Broker1"
#define BUS_IFACE "org.mmn.Broker1.Manager"
#define ADMIN_GID 4242
#define NOBODY	  65534

static struct private_bus pb;
static pid_t fake_pid;
static int fake_in = -1, fake_out = -1;
static sd_bus *bus;

/* Broker side effects printed by the fake since the last command. */
static char effects[1024];

#define MAX_SIGNALS 64
static sd_bus_message *signals[MAX_SIGNALS];
static int nsignals;

static int fake_start(const char *exe)
{
	int in[2], out[2];
	char line[128];

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	fake_pid = fork();
	if (fake_pid < 0)
		return -errno;
	if (fake_pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		setenv("MMN_ADMIN_GROUP", "4242", 1);
		execl(exe, exe, pb.address, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	fake_in = in[1];
	fake_out = out[0];
	if (read_line_fd(fake_out, line, sizeof(line)) < 0 || strcmp(line, "READY") != 0)
		return -EIO;
	return 0;
}

/* Send a command, wait for "ok", keep the lines before it in effects. */
static int fake_cmd(const char *cmd)
{
	char line[256];

	effects[0] = '\0';
	if (write(fake_in, cmd, strlen(cmd)) < 0 || write(fake_in, "\n", 1) != 1)
		return -errno;
	for (;;) {
		if (read_line_fd(fake_out, line, sizeof(line)) < 0)
			return -EPIPE;
		if (strcmp(line, "ok") == 0)
			return 0;
		strncat(effects, line, sizeof(effects) - strlen(effects) - 2);
		strcat(effects, ";");
	}
}

static void drop_signals(void)
{
	for (int i = 0; i < nsignals; i++)
		sd_bus_message_unref(signals[i]);
	nsignals = 0;
}

/*
 * Everything the broker emitted before now: a Ping round trip to the same
 * connection orders after its earlier signals, which then sit in our
 * read queue.
 */
static void collect_signals(void)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Peer", "Ping", NULL, NULL,
			       NULL);
	tap_require(r >= 0);
	while ((r = sd_bus_process(bus, &m)) > 0) {
		if (m && sd_bus_message_is_signal(m, NULL, NULL) > 0 && nsignals < MAX_SIGNALS)
			signals[nsignals++] = sd_bus_message_ref(m);
		m = sd_bus_message_unref(m);
	}
}

static int count_signals(const char *member)
{
	int n = 0;

	for (int i = 0; i < nsignals; i++)
		if (strcmp(sd_bus_message_get_member(signals[i]), member) == 0)
			n++;
	return n;
}

static sd_bus_message *find_signal(const char *member)
{
	for (int i = 0; i < nsignals; i++)
		if (strcmp(sd_bus_message_get_member(signals[i]), member) == 0) {
			sd_bus_message_rewind(signals[i], true);
			return signals[i];
		}
	return NULL;
}

/* PropertiesChanged names @prop among the changed ones. */
static bool properties_changed(const char *prop)
{
	for (int i = 0; i < nsignals; i++) {
		sd_bus_message *m = signals[i];
		const char *iface, *name;

		if (strcmp(sd_bus_message_get_member(m), "PropertiesChanged") != 0)
			continue;
		sd_bus_message_rewind(m, true);
		if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, BUS_IFACE) != 0)
			continue;
		if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
			continue;
		while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
			if (sd_bus_message_read(m, "s", &name) > 0 && strcmp(name, prop) == 0)
				return true;
			sd_bus_message_skip(m, "v");
			sd_bus_message_exit_container(m);
		}
	}
	return false;
}

static uint64_t get_t(const char *prop)
{
	uint64_t v = UINT64_MAX;

	if (sd_bus_get_property_trivial(bus, BUS_NAME, BUS_PATH, BUS_IFACE, prop, NULL, 't', &v) < 0)
		return UINT64_MAX;
	return v;
}

static uint32_t get_u(const char *prop)
{
	uint32_t v = UINT32_MAX;

	if (sd_bus_get_property_trivial(bus, BUS_NAME, BUS_PATH, BUS_IFACE, prop, NULL, 'u', &v) < 0)
		return UINT32_MAX;
	return v;
}

static char *get_s(const char *prop)
{
	char *s = NULL;

	if (sd_bus_get_property_string(bus, BUS_NAME, BUS_PATH, BUS_IFACE, prop, NULL, &s) < 0)
		return NULL;
	return s;
}

static void test_introspection(void)
{
	sd_bus_message *reply = NULL;
	const char *xml = "";
	static const char *const names[] = {
		"interface name=\"org.mmn.Broker1.Manager\"",
		"ListClients",
		"ListSubscriptions",
		"GetStats",
		"EvictClient",
		"SetDefaults",
		"Reload",
		"ClientConnected",
		"ClientDisconnected",
		"ClientEvicted",
		"SourceChanged",
		"InvalidationSampled",
		"DefaultAckTimeoutMSec",
		"NonBlockableRefusals",
	};
	int r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Introspectable", "Introspect",
			       NULL, &reply, NULL);
	tap_ok(r >= 0 && sd_bus_message_read(reply, "s", &xml) > 0, "Introspect answers");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		tap_ok(strstr(xml, names[i]) != NULL, "introspection names %s", names[i]);
	sd_bus_message_unref(reply);
}

static void test_properties(void)
{
	char *s;
	int b = -1;

	s = get_s("Version");
	tap_ok(s && *s, "Version is set (%s)", s ? s : "null");
	free(s);
	s = get_s("Source");
	tap_is_str(s, "test", "Source");
	free(s);
	tap_is_u64(get_t("SourceEventMask"), 0x7ff, "SourceEventMask");
	sd_bus_get_property_trivial(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "AcksHoldKernel", NULL, 'b', &b);
	tap_is_int(b, 0, "AcksHoldKernel");
	tap_is_u64(get_t("Clients"), 0, "Clients");
	tap_is_u64(get_t("Subscriptions"), 0, "Subscriptions");
	tap_is_u64(get_t("KernelSubscriptions"), 0, "KernelSubscriptions");
	tap_is_u64(get_t("Invalidations"), 0, "Invalidations");
	tap_is_u64(get_t("BlockingAcks"), 0, "BlockingAcks");
	tap_is_u64(get_t("Timeouts"), 0, "Timeouts");
	tap_is_u64(get_t("Evictions"), 0, "Evictions");
	tap_is_u64(get_t("NonBlockableRefusals"), 0, "NonBlockableRefusals");
	tap_is_u64(get_t("QueueOverflows"), 0, "QueueOverflows");
	tap_is_u64(get_t("ProtocolErrors"), 0, "ProtocolErrors");
	tap_is_u64(get_t("ImpliedEnds"), 0, "ImpliedEnds");
	tap_is_u64(get_t("EndTimeouts"), 0, "EndTimeouts");
	tap_is_int(get_u("DefaultAckTimeoutMSec"), 1000, "DefaultAckTimeoutMSec");
	tap_is_int(get_u("AckCapMSec"), 5000, "AckCapMSec");
	tap_is_int(get_u("MaxClients"), 1024, "MaxClients");
	tap_is_int(get_u("MaxSubscriptionsPerClient"), 1024, "MaxSubscriptionsPerClient");
	tap_is_int(get_u("MaxQueuedEvents"), 1024, "MaxQueuedEvents");
}

static void test_clients(void)
{
	sd_bus_message *m, *reply = NULL;
	uint64_t id = 0, ev = 0;
	uint32_t pid = 0, uid = 0, subs = 0, pending = 0;
	const char *name = "", *mode = "";
	int r;

	tap_require(fake_cmd("connect 7 1234 1000 alpha") == 0);
	collect_signals();
	m = find_signal("ClientConnected");
	tap_ok(m && sd_bus_message_read(m, "tuus", &id, &pid, &uid, &name) > 0, "ClientConnected emitted");
	tap_ok(id == 7 && pid == 1234 && uid == 1000 && strcmp(name, "alpha") == 0,
	       "ClientConnected carries id, pid, uid, name (%" PRIu64 " %u %u %s)", id, pid, uid, name);
	tap_ok(properties_changed("Clients"), "PropertiesChanged names Clients");
	tap_is_u64(get_t("Clients"), 1, "Clients counts the new client");
	drop_signals();

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "ListClients", NULL, &reply, NULL);
	tap_ok(r >= 0, "ListClients succeeds for root");
	r = r >= 0 ? sd_bus_message_enter_container(reply, 'a', "(tuussuut)") : r;
	r = r >= 0 ? sd_bus_message_read(reply, "(tuussuut)", &id, &pid, &uid, &name, &mode, &subs, &pending,
					 &ev)
		   : r;
	tap_ok(r > 0 && id == 7 && pid == 1234 && uid == 1000 && strcmp(name, "alpha") == 0 &&
		       strcmp(mode, "blocking") == 0 && subs == 1 && pending == 2 && ev == 3,
	       "ListClients returns every field");
	tap_ok(r > 0 && sd_bus_message_read(reply, "(tuussuut)", &id, &pid, &uid, &name, &mode, &subs,
					    &pending, &ev) == 0,
	       "ListClients returns one client");
	sd_bus_message_unref(reply);
}

static int count_subs(uint64_t client, uint32_t pid, uint64_t *first_id)
{
	sd_bus_message *reply = NULL;
	uint64_t id, cl, start, end, mask, seq;
	uint32_t p, flags, ksub;
	int n = 0, r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "ListSubscriptions", NULL, &reply, "tu",
			       client, pid);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', "(ttuttuttu)");
	while (r >= 0 && (r = sd_bus_message_read(reply, "(ttuttuttu)", &id, &cl, &p, &start, &end, &flags,
						  &mask, &seq, &ksub)) > 0) {
		if (n++ == 0 && first_id)
			*first_id = id;
		if (id == 11 && !(cl == 7 && p == 1234 && start == 0x10000 && end == 0x20000 && flags == 1 &&
				  mask == 0x3 && seq == 42 && ksub == 5))
			return -EBADMSG;
	}
	sd_bus_message_unref(reply);
	return r < 0 ? r : n;
}

static void test_subscriptions(void)
{
	uint64_t first = 0;

	tap_require(fake_cmd("connect 8 999 0 beta") == 0);
	tap_require(fake_cmd("sub 11 7 1234 10000 20000 1 3 42 5") == 0);
	tap_require(fake_cmd("sub 12 7 555 30000 40000 2 0 0 6") == 0);
	tap_require(fake_cmd("sub 13 8 1234 50000 60000 1 0 2 7") == 0);
	tap_is_int(count_subs(0, 0, NULL), 3, "ListSubscriptions(0, 0) lists all, fields intact");
	tap_is_int(count_subs(7, 0, NULL), 2, "ListSubscriptions filters by client");
	tap_is_int(count_subs(0, 1234, NULL), 2, "ListSubscriptions filters by pid");
	tap_is_int(count_subs(8, 1234, &first), 1, "ListSubscriptions filters by both");
	tap_is_u64(first, 13, "... the right one");
	tap_is_int(count_subs(99, 0, NULL), 0, "an unknown client has none");
	tap_is_u64(get_t("Subscriptions"), 3, "Subscriptions property");
	drop_signals();
}

static void test_stats(void)
{
	sd_bus_message *reply = NULL;
	const char *key;
	uint64_t v;
	int n = 0, subs = -1, r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "GetStats", NULL, &reply, NULL);
	tap_ok(r >= 0, "GetStats succeeds");
	r = r >= 0 ? sd_bus_message_enter_container(reply, 'a', "{st}") : r;
	while (r >= 0 && (r = sd_bus_message_read(reply, "{st}", &key, &v)) > 0) {
		n++;
		if (strcmp(key, "Subscriptions") == 0)
			subs = (int)v;
	}
	tap_is_int(n, 12, "GetStats has the twelve counters");
	tap_is_int(subs, 3, "GetStats Subscriptions matches");
	sd_bus_message_unref(reply);
}

static void test_evict(void)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m;
	uint64_t id = 0;
	const char *reason = "";
	int r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "EvictClient", &e, NULL, "t", (uint64_t)7);
	tap_ok(r >= 0, "EvictClient(7) succeeds for root");
	tap_require(fake_cmd("") == 0);
	tap_is_str(effects, "evict 7;", "EvictClient reached the broker");
	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "EvictClient", &e, NULL, "t",
			       (uint64_t)99);
	tap_ok(r < 0 && sd_bus_error_has_name(&e, "org.mmn.Broker1.Error.NoSuchClient"),
	       "EvictClient(99): org.mmn.Broker1.Error.NoSuchClient (%s)", e.name ? e.name : "no error");
	sd_bus_error_free(&e);

	tap_require(fake_cmd("evicted 7 admin") == 0);
	tap_require(fake_cmd("disconnect 7") == 0);
	collect_signals();
	m = find_signal("ClientEvicted");
	tap_ok(m && sd_bus_message_read(m, "ts", &id, &reason) > 0 && id == 7 && strcmp(reason, "admin") == 0,
	       "ClientEvicted(7, \"admin\")");
	m = find_signal("ClientDisconnected");
	id = 0;
	tap_ok(m && sd_bus_message_read(m, "t", &id) > 0 && id == 7, "ClientDisconnected(7)");
	tap_ok(properties_changed("Clients"), "PropertiesChanged names Clients on disconnect");
	tap_is_u64(get_t("Clients"), 1, "Clients dropped");
	drop_signals();
}

static int set_defaults(sd_bus_error *e, const char *key, const char *type, uint32_t v)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, BUS_IFACE, "SetDefaults");
	if (r >= 0)
		r = sd_bus_message_append(m, "a{sv}", 1, key, type, v);
	if (r >= 0)
		r = sd_bus_call(bus, m, 0, e, NULL);
	sd_bus_message_unref(m);
	return r;
}

static void test_defaults(void)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	r = set_defaults(&e, "DefaultAckTimeoutMSec", "u", 50);
	tap_ok(r >= 0, "SetDefaults(DefaultAckTimeoutMSec=50) succeeds");
	tap_require(fake_cmd("") == 0);
	tap_is_str(effects, "set-defaults 50 5000 1024 1024 1024;",
		   "SetDefaults reached the broker, others kept");
	tap_is_int(get_u("DefaultAckTimeoutMSec"), 50, "the property reads 50");
	collect_signals();
	tap_ok(properties_changed("DefaultAckTimeoutMSec"), "PropertiesChanged names DefaultAckTimeoutMSec");
	drop_signals();

	r = set_defaults(&e, "Bogus", "u", 1);
	tap_ok(r < 0 && sd_bus_error_has_name(&e, SD_BUS_ERROR_INVALID_ARGS), "an unknown key: InvalidArgs");
	sd_bus_error_free(&e);
	r = set_defaults(&e, "MaxClients", "t", 1);
	tap_ok(r < 0 && sd_bus_error_has_name(&e, SD_BUS_ERROR_INVALID_ARGS), "a wrong type: InvalidArgs");
	sd_bus_error_free(&e);
	r = set_defaults(&e, "DefaultAckTimeoutMSec", "u", 6000);
	tap_ok(r < 0 && sd_bus_error_has_name(&e, "org.mmn.Broker1.Error.InvalidValue"),
	       "a timeout above the cap: org.mmn.Broker1.Error.InvalidValue");
	sd_bus_error_free(&e);
	tap_is_int(get_u("DefaultAckTimeoutMSec"), 50, "a refused change changes nothing");
	{
		static const struct {
			const char *key;
			uint32_t v;
			const char *max;
		} bad[] = {
			{"MaxQueuedEvents", UINT32_C(1) << 30, "1048576"},
			{"MaxQueuedEvents", 0, "1048576"},
			{"MaxClients", UINT32_MAX, "65536"},
			{"AckCapMSec", 0, "600000"},
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			r = set_defaults(&e, bad[i].key, "u", bad[i].v);
			tap_ok(r < 0 && sd_bus_error_has_name(&e, "org.mmn.Broker1.Error.InvalidValue") &&
				       e.message && strstr(e.message, bad[i].key) && strstr(e.message, bad[i].max),
			       "%s=%u: InvalidValue naming the key and its range (%s)", bad[i].key,
			       (unsigned)bad[i].v, e.message ? e.message : "no message");
			sd_bus_error_free(&e);
		}
		tap_require(fake_cmd("") == 0);
		tap_is_str(effects, "", "out-of-range values never reached the broker");
		tap_is_int(get_u("MaxQueuedEvents"), 1024, "MaxQueuedEvents unchanged");
	}

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "Reload", &e, NULL, NULL);
	tap_ok(r >= 0, "Reload succeeds");
	tap_require(fake_cmd("") == 0);
	tap_is_str(effects, "reload;", "Reload reached the broker");
	sd_bus_error_free(&e);
}

static void test_source_and_samples(void)
{
	sd_bus_message *m;
	const char *source = "";
	char *s;
	uint64_t start, end, latency, suppressed;
	uint32_t pid, event, clients;
	int blockable;

	tap_require(fake_cmd("source uffd") == 0);
	collect_signals();
	m = find_signal("SourceChanged");
	tap_ok(m && sd_bus_message_read(m, "s", &source) > 0 && strcmp(source, "uffd") == 0,
	       "SourceChanged(\"uffd\")");
	tap_ok(properties_changed("Source") && properties_changed("AcksHoldKernel"),
	       "PropertiesChanged names Source and AcksHoldKernel");
	s = get_s("Source");
	tap_is_str(s, "uffd", "Source reads uffd");
	free(s);
	drop_signals();

	/* 50 samples inside one loop iteration: one window of the limit. */
	tap_require(fake_cmd("inv 50") == 0);
	collect_signals();
	tap_is_int(count_signals("InvalidationSampled"), 10,
		   "InvalidationSampled is limited to 10 per second");
	m = find_signal("InvalidationSampled");
	tap_ok(m &&
		       sd_bus_message_read(m, "uttubutt", &pid, &start, &end, &event, &blockable, &clients,
					   &latency, &suppressed) > 0 &&
		       pid == 4242 && start == 0 && end == 0x1000 && blockable && clients == 1 &&
		       latency == 17 && suppressed == 0,
	       "InvalidationSampled carries the invalidation");
	tap_is_u64(get_t("Invalidations"), 50, "Invalidations counts all 50");
	drop_signals();
}

/* Names in the man page's interface block: "Name(" and "readonly T Name". */
static int man_names(const char *path, char names[][64], int max)
{
	char line[256], *p, *e;
	int n = 0, in_block = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f) && n < max) {
		if (strncmp(line, "  interface org.mmn.Broker1.Manager {", 37) == 0) {
			in_block = 1;
			continue;
		}
		if (!in_block)
			continue;
		if (strncmp(line, "  };", 4) == 0)
			break;
		for (p = line; *p == ' '; p++)
			;
		if (strncmp(p, "readonly ", 9) == 0) {
			p = strchr(p + 9, ' ');
			if (!p)
				continue;
			p++;
			e = strchr(p, ' ');
		} else if (isupper((unsigned char)*p)) {
			e = strchr(p, '(');
		} else {
			continue;
		}
		if (!e || e - p >= 64)
			continue;
		memcpy(names[n], p, (size_t)(e - p));
		names[n++][e - p] = '\0';
	}
	fclose(f);
	return n;
}

static void test_man_page(const char *path)
{
	sd_bus_message *reply = NULL;
	const char *xml = "", *p;
	char names[64][64], pat[sizeof(names[0]) + 16];
	int n, found = 0, in_xml = 0, r;

	n = man_names(path, names, 64);
	tap_ok(n > 20, "the man page's interface block names %d members", n);
	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Introspectable", "Introspect",
			       NULL, &reply, NULL);
	if (r < 0 || sd_bus_message_read(reply, "s", &xml) <= 0)
		xml = "";
	p = strstr(xml, "<interface name=\"" BUS_IFACE "\">");
	for (int i = 0; i < n; i++) {
		snprintf(pat, sizeof(pat), " name=\"%.63s\"", names[i]);
		if (p && strstr(p, pat))
			found++;
		else
			tap_diag("documented but not introspected: %s", names[i]);
	}
	tap_is_int(found, n, "every documented member is introspected");
	/* And the other way round: count members of the interface. */
	for (const char *q = p; q && (q = strstr(q, " name=\"")); q++) {
		const char *end = strstr(p, "</interface>");

		if (end && q > end)
			break;
		if (strncmp(q - 7, "<method", 7) == 0 || strncmp(q - 7, "<signal", 7) == 0 ||
		    strncmp(q - 9, "<property", 9) == 0)
			in_xml++;
	}
	tap_is_int(in_xml, n, "every introspected member is documented");
	sd_bus_message_unref(reply);
}

/*
 * In a child: drop to uid nobody, in group ADMIN_GID or not, and report
 * one bit per expectation met.
 */
static int unprivileged_child(bool in_group)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	gid_t g = ADMIN_GID;
	sd_bus *b = NULL;
	sd_bus_message *m = NULL;
	int bits = 0, r;

	if (setgroups(in_group ? 1 : 0, &g) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) < 0)
		return 0x80;
	if (sd_bus_new(&b) < 0 || sd_bus_set_address(b, pb.address) < 0 || sd_bus_set_bus_client(b, 1) < 0 ||
	    sd_bus_start(b) < 0)
		return 0x40;
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "ListClients", &e, NULL, NULL);
	if (in_group ? r >= 0 : sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED))
		bits |= 1;
	sd_bus_error_free(&e);
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "GetStats", &e, NULL, NULL);
	if (in_group ? r >= 0 : sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED))
		bits |= 2;
	sd_bus_error_free(&e);
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "EvictClient", &e, NULL, "t", (uint64_t)8);
	if (r < 0 && sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED))
		bits |= 4;
	sd_bus_error_free(&e);
	r = sd_bus_message_new_method_call(b, &m, BUS_NAME, BUS_PATH, BUS_IFACE, "SetDefaults");
	if (r >= 0)
		r = sd_bus_message_append(m, "a{sv}", 1, "MaxClients", "u", 1);
	if (r >= 0)
		r = sd_bus_call(b, m, 0, &e, NULL);
	if (r < 0 && sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED))
		bits |= 8;
	sd_bus_error_free(&e);
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "Reload", &e, NULL, NULL);
	if (r < 0 && sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED))
		bits |= 16;
	sd_bus_error_free(&e);
	return bits;
}

static int run_unprivileged(bool in_group)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(unprivileged_child(in_group));
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void test_credentials(void)
{
	if (geteuid() != 0) {
		tap_diag("not root: cannot switch to another uid, credential checks not run");
		return;
	}
	tap_is_int(run_unprivileged(true), 0x1f,
		   "uid nobody in the admin group: reads allowed, Evict/SetDefaults/Reload AccessDenied");
	tap_is_int(run_unprivileged(false), 0x1f, "uid nobody outside the group: everything AccessDenied");
	tap_require(fake_cmd("") == 0);
	tap_is_str(effects, "", "no refused call reached the broker");
}

int main(int argc, char **argv)
{
	int r, status;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: test-admin-dbus FAKE-BROKER [MAN-PAGE]\n");
		return 2;
	}
	private_bus_start_tap(&pb);
	tap_require(fake_start(argv[1]) == 0);
	tap_require(sd_bus_new(&bus) >= 0 && sd_bus_set_address(bus, pb.address) >= 0 &&
		    sd_bus_set_bus_client(bus, 1) >= 0 && sd_bus_start(bus) >= 0);
	tap_require(sd_bus_add_match(bus, NULL, "type='signal',sender='" BUS_NAME "',path='" BUS_PATH "'",
				     NULL, NULL) >= 0);

	test_introspection();
	if (argc == 3)
		test_man_page(argv[2]);
	test_properties();
	test_clients();
	test_subscriptions();
	test_stats();
	test_evict();
	test_defaults();
	test_source_and_samples();
	test_credentials();

	tap_require(fake_cmd("quit") == 0);
	r = waitpid(fake_pid, &status, 0);
	tap_ok(r == fake_pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "the broker's loop closes cleanly after mmn__bus_close (status 0x%x)", status);
	sd_bus_flush_close_unref(bus);
	private_bus_stop(&pb);
	return tap_done();
}
