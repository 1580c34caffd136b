/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A malformed-call campaign against a real mmnd (test source) on a private
 * dbus-daemon: CALLS calls with wrong signatures, wrong types,
 * out-of-range numbers, unknown methods and interfaces, huge strings,
 * deep nesting, wrong object paths and property misuse, a share of them
 * from uid nobody.  Every call must be answered (an error or a reply, never
 * a timeout or a vanished peer); afterwards mmnd still answers a normal
 * D-Bus call, serves a normal libmmn client, and exits 0 on SIGTERM.
 *
 *   test-admin-dbus-malformed MMND
 *
 * The calls come from a fixed-seed generator, so a failure is repeatable.
 */
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <systemd/sd-bus.h>

#include "mmn/mmn.h"
#include "mmnd-run.h"
#include "tap.h"
#include "bus-harness.h"

#define BUS_NAME  "org.mmn.Broker1"
#define BUS_PATH  "/org/mmn/Broker1"
#define BUS_IFACE "org.mmn.Broker1.Manager"
#define NOBODY	  65534

#define CALLS	       10000
#define NOBODY_CALLS   1000 /* of CALLS, made by a child running as uid nobody */
#define IN_FLIGHT      64   /* calls outstanding at once */
#define CALL_TIMEOUT_US (20 * 1000000ull)

static struct private_bus pb;
static char sock_path[128];
static pid_t mmnd_pid;
static uint64_t rng = 0x6d6d6e2d66757a7aull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const char *pick(const char *const *v, size_t n)
{
	return v[rnd() % n];
}

#define PICK(v) pick(v, sizeof(v) / sizeof((v)[0]))

static const char *const methods[] = {"ListClients", "ListSubscriptions", "GetStats", "EvictClient",
				      "SetDefaults", "Reload"};
static const char *const keys[] = {"DefaultAckTimeoutMSec", "AckCapMSec", "MaxClients",
				   "MaxSubscriptionsPerClient", "MaxQueuedEvents", "Version", "", "Bogus"};
static const char *const props[] = {"Version", "Source", "SourceEventMask", "AcksHoldKernel", "Clients",
				    "Timeouts", "MaxClients", "AckCapMSec", "Nope", ""};
static const char *const basic_sigs[] = {"y", "b", "n", "q", "i", "u", "x", "t", "d", "s", "o", "g"};

/* Out-of-range and edge numbers. */
static uint64_t edge(void)
{
	static const uint64_t v[] = {0, 1, 2, 999, 1000, 600000, 600001, 65535, 65536, INT32_MAX,
				     (uint64_t)INT32_MAX + 1, UINT32_MAX, (uint64_t)UINT32_MAX + 1, INT64_MAX,
				     UINT64_MAX};

	return rnd() % 4 ? v[rnd() % (sizeof(v) / sizeof(v[0]))] : rnd();
}

static char *big_string(size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	for (size_t i = 0; i < n; i++)
		s[i] = (char)('a' + rnd() % 26);
	s[n] = 0;
	return s;
}

/* One value of basic type @t. */
static int append_basic(sd_bus_message *m, char t)
{
	uint64_t v = edge();
	double d = (double)(int64_t)v / 3.0;

	switch (t) {
	case 's':
		if (rnd() % 64 == 0) {
			char *s = big_string(64 * 1024 + rnd() % 4096);
			int r = sd_bus_message_append_basic(m, 's', s);

			free(s);
			return r;
		}
		return sd_bus_message_append_basic(m, 's', PICK(keys));
	case 'o':
		return sd_bus_message_append_basic(m, 'o', rnd() % 2 ? "/" : "/org/mmn/Broker1/x");
	case 'g':
		return sd_bus_message_append_basic(m, 'g', PICK(basic_sigs));
	case 'd':
		return sd_bus_message_append_basic(m, 'd', &d);
	case 'b': {
		int b = (int)(v & 1);

		return sd_bus_message_append_basic(m, 'b', &b);
	}
	default:
		return sd_bus_message_append_basic(m, t, &v);
	}
}

/* A variant nested @depth deep around a basic value. */
static int append_deep_variant(sd_bus_message *m, int depth)
{
	int r;

	if (depth == 0)
		return sd_bus_message_append(m, "v", "u", (uint32_t)edge());
	r = sd_bus_message_open_container(m, 'v', "v");
	if (r >= 0)
		r = append_deep_variant(m, depth - 1);
	return r < 0 ? r : sd_bus_message_close_container(m);
}

/* SetDefaults' a{sv} with wrong keys, wrong variant types, edge values, repeats. */
static int append_settings(sd_bus_message *m)
{
	unsigned n = rnd() % 8 == 0 ? 200 + rnd() % 800 : rnd() % 6;
	int r = sd_bus_message_open_container(m, 'a', "{sv}");

	for (unsigned i = 0; r >= 0 && i < n; i++) {
		char t = PICK(basic_sigs)[0];
		char vs[2] = {rnd() % 2 ? 'u' : t, 0};

		r = sd_bus_message_open_container(m, 'e', "sv");
		if (r >= 0)
			r = sd_bus_message_append_basic(m, 's', PICK(keys));
		if (r >= 0 && rnd() % 16 == 0) {
			r = append_deep_variant(m, 1 + rnd() % 60);
		} else if (r >= 0) {
			r = sd_bus_message_open_container(m, 'v', vs);
			if (r >= 0)
				r = append_basic(m, vs[0]);
			if (r >= 0)
				r = sd_bus_message_close_container(m);
		}
		if (r >= 0)
			r = sd_bus_message_close_container(m);
	}
	return r < 0 ? r : sd_bus_message_close_container(m);
}

/* Up to 8 random basic arguments: a wrong signature for nearly every method. */
static int append_random_args(sd_bus_message *m)
{
	unsigned n = rnd() % 9;
	int r = 0;

	for (unsigned i = 0; r >= 0 && i < n; i++)
		r = rnd() % 6 == 0 ? append_settings(m) : append_basic(m, PICK(basic_sigs)[0]);
	return r;
}

/* Build malformed call number @i on @b. */
static int build_call(sd_bus *b, sd_bus_message **out, unsigned i)
{
	const char *path = BUS_PATH, *iface = BUS_IFACE, *member = PICK(methods);
	sd_bus_message *m = NULL;
	char name[64];
	int kind = (int)(rnd() % 10), r;

	switch (kind) {
	case 0: /* unknown method, valid name */
		snprintf(name, sizeof(name), "Method%" PRIu64, rnd() % 1000);
		member = name;
		break;
	case 1: /* wrong object path */
		path = rnd() % 2 ? "/org/mmn/Broker1/x" : "/org/mmn";
		break;
	case 2: /* wrong or no interface */
		iface = rnd() % 2 ? NULL : "org.mmn.Broker1.Nope";
		break;
	case 3: /* property misuse */
		iface = "org.freedesktop.DBus.Properties";
		member = rnd() % 2 ? "Set" : "Get";
		break;
	default:
		break;
	}
	r = sd_bus_message_new_method_call(b, &m, BUS_NAME, path, iface, member);
	if (r < 0)
		return r;
	if (kind == 3) {
		r = sd_bus_message_append(m, "ss", rnd() % 4 ? BUS_IFACE : "org.mmn.Nope", PICK(props));
		if (r >= 0 && strcmp(member, "Set") == 0)
			r = rnd() % 4 ? sd_bus_message_append(m, "v", "u", (uint32_t)edge())
				      : append_deep_variant(m, 1 + rnd() % 60);
	} else if (kind == 4 || (kind >= 5 && strcmp(member, "SetDefaults") == 0)) {
		r = append_settings(m);
	} else if (kind == 5 && strcmp(member, "ListSubscriptions") == 0) {
		r = sd_bus_message_append(m, "tu", edge(), (uint32_t)edge());
	} else if (kind == 5 && strcmp(member, "EvictClient") == 0) {
		r = sd_bus_message_append(m, "t", edge());
	} else {
		r = append_random_args(m);
	}
	if (r < 0) {
		sd_bus_message_unref(m);
		return r;
	}
	(void)i;
	*out = m;
	return 0;
}

struct tally {
	unsigned sent, replies, errors, refused, bad; /* bad: no reply, timeout, peer gone */
	char first_bad[256];
};

static int on_reply(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	struct tally *t = ud;
	const sd_bus_error *err = sd_bus_message_get_error(m);

	t->replies++;
	if (!err)
		return 0;
	t->errors++;
	if (sd_bus_error_has_name(err, SD_BUS_ERROR_NO_REPLY) ||
	    sd_bus_error_has_name(err, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
	    sd_bus_error_has_name(err, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
	    sd_bus_error_has_name(err, SD_BUS_ERROR_DISCONNECTED) ||
	    sd_bus_error_has_name(err, SD_BUS_ERROR_TIMEOUT)) {
		if (!t->bad++)
			snprintf(t->first_bad, sizeof(t->first_bad), "%s: %s", err->name,
				 err->message ? err->message : "");
	}
	return 0;
}

/* @n calls with up to IN_FLIGHT outstanding; every one must be answered. */
static void campaign(sd_bus *b, unsigned n, struct tally *t)
{
	while (t->replies < n) {
		int r;

		while (t->sent < n && t->sent - t->replies < IN_FLIGHT) {
			sd_bus_message *m = NULL;

			if (build_call(b, &m, t->sent) < 0) {
				t->sent++, t->replies++, t->refused++; /* sd-bus would not build it */
				continue;
			}
			r = sd_bus_call_async(b, NULL, m, on_reply, t, CALL_TIMEOUT_US);
			sd_bus_message_unref(m);
			if (r < 0) {
				t->sent++, t->replies++, t->refused++; /* refused by sd-bus before sending */
				continue;
			}
			t->sent++;
		}
		r = sd_bus_process(b, NULL);
		if (r < 0)
			break;
		if (r == 0 && sd_bus_wait(b, CALL_TIMEOUT_US) < 0)
			break;
	}
}

static sd_bus *connect_bus(void)
{
	sd_bus *b = NULL;

	if (sd_bus_new(&b) < 0 || sd_bus_set_address(b, pb.address) < 0 || sd_bus_set_bus_client(b, 1) < 0 ||
	    sd_bus_start(b) < 0)
		return NULL;
	return b;
}

/* The nobody share: every call answered (AccessDenied, or a property read); 0 when so. */
static int nobody_child(void)
{
	struct tally t = {0};
	sd_bus *b;

	if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) < 0)
		return 2;
	b = connect_bus();
	if (!b)
		return 3;
	rng ^= 0x9e3779b97f4a7c15ull;
	campaign(b, NOBODY_CALLS, &t);
	sd_bus_flush_close_unref(b);
	return t.replies == NOBODY_CALLS && !t.bad ? 0 : 4;
}

static int start_mmnd(const char *exe)
{
	char a_bus[300], log[96];
	const char *args[] = {"--source=test", a_bus, "--log-level=warning", NULL};
	struct mmnd_run m = {.exe = exe, .log = log};
	int r;

	snprintf(sock_path, sizeof(sock_path), "%s/mmnd.sock", pb.dir);
	snprintf(m.sock, sizeof(m.sock), "%s", sock_path);
	snprintf(log, sizeof(log), "%s/mmnd.log", pb.dir);
	snprintf(a_bus, sizeof(a_bus), "--bus=%s", pb.address);
	r = mmnd_run_start(&m, args, 20000);
	mmnd_pid = m.pid;
	return r;
}

static bool mmnd_alive(void)
{
	return waitpid(mmnd_pid, NULL, WNOHANG) == 0;
}

/* The five defaults, as properties. */
static bool read_defaults(sd_bus *b, uint32_t v[5])
{
	static const char *const names[] = {"DefaultAckTimeoutMSec", "AckCapMSec", "MaxClients",
					    "MaxSubscriptionsPerClient", "MaxQueuedEvents"};

	for (int i = 0; i < 5; i++)
		if (sd_bus_get_property_trivial(b, BUS_NAME, BUS_PATH, BUS_IFACE, names[i], NULL, 'u', &v[i]) < 0)
			return false;
	return true;
}

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	return 0;
}

/* A normal libmmn client: connect, subscribe to its own memory, unsubscribe. */
static int normal_client(void)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_inval};
	struct mmn_client *c = NULL;
	struct mmn_sub *s = NULL;
	void *mem = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r;

	if (mem == MAP_FAILED)
		return -errno;
	r = mmn_connect(sock_path, &c);
	if (r == 0)
		r = mmn_subscribe(c, 0, (uintptr_t)mem, 4 * 4096, &o, &s);
	if (r == 0)
		r = mmn_unsubscribe(s);
	mmn_disconnect(c);
	munmap(mem, 4 * 4096);
	return r;
}

static void show_log(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "head -n 20 '%s/mmnd.log' | sed 's/^/# mmnd: /'", pb.dir);
	fflush(stdout);
	if (system(cmd) != 0)
		tap_diag("no mmnd log");
}

int main(int argc, char **argv)
{
	uint32_t before[5], after[5];
	struct tally t = {0};
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus *b;
	int r, status = 0;
	pid_t child;

	if (argc != 2) {
		fprintf(stderr, "usage: test-admin-dbus-malformed MMND\n");
		return 2;
	}
	private_bus_start_tap(&pb);
	tap_require(start_mmnd(argv[1]) == 0);
	b = connect_bus();
	tap_require(b);
	tap_require(read_defaults(b, before));

	if (geteuid() == 0) {
		child = fork();
		if (child == 0)
			_exit(nobody_child());
		tap_ok(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
			       WEXITSTATUS(status) == 0,
		       "%d malformed calls from uid nobody all answered (child status 0x%x)", NOBODY_CALLS,
		       status);
		tap_ok(read_defaults(b, after) && memcmp(before, after, sizeof(before)) == 0,
		       "uid nobody changed no default");
	} else {
		tap_diag("not root: the uid nobody share is made as this uid");
	}

	campaign(b, CALLS - (geteuid() == 0 ? NOBODY_CALLS : 0), &t);
	tap_diag("%u calls: %u not sent (sd-bus refused to build them), %u answered with an error, %u with a reply",
		 t.sent, t.refused, t.errors, t.replies - t.refused - t.errors);
	tap_ok(t.replies == t.sent && t.bad == 0, "every malformed call was answered (%u unanswered%s%s)",
	       t.bad + (t.sent - t.replies), t.bad ? ", first: " : "", t.first_bad);
	tap_ok(mmnd_alive(), "mmnd is still running");
	if (!mmnd_alive())
		show_log();

	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "GetStats", &e, NULL, NULL);
	tap_ok(r >= 0, "a normal GetStats succeeds afterwards (%s)", r < 0 ? e.message : "ok");
	sd_bus_error_free(&e);
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "SetDefaults", &e, NULL, "a{sv}", 5,
			       "DefaultAckTimeoutMSec", "u", before[0], "AckCapMSec", "u", before[1],
			       "MaxClients", "u", before[2], "MaxSubscriptionsPerClient", "u", before[3],
			       "MaxQueuedEvents", "u", before[4]);
	tap_ok(r >= 0, "a normal SetDefaults restores the defaults (%s)", r < 0 ? e.message : "ok");
	sd_bus_error_free(&e);
	r = normal_client();
	tap_ok(r == 0, "a normal client connects, subscribes and unsubscribes (%s)", mmn_strerror(r));

	sd_bus_flush_close_unref(b);
	kill(mmnd_pid, SIGTERM);
	tap_ok(waitpid(mmnd_pid, &status, 0) == mmnd_pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "mmnd exits 0 on SIGTERM (status 0x%x)", status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		show_log();
	private_bus_stop(&pb);
	return tap_done();
}
