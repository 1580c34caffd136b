/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the org.mmn.Broker1 method handlers of daemon/dbus.c
 * (included below, so its vtable and struct bus are reachable without a
 * hook in the daemon) in front of a real broker with the test source.
 *
 * No bus daemon: mmnd's side is an sd-bus server on one end of a
 * socketpair (peer credentials: this process, root when the suite runs as
 * root, so the access checks pass and the handlers run), the caller an
 * sd-bus client on the other.  Each input becomes one method call:
 *
 *   byte 0   member (the API's methods, Properties and Introspectable
 *            methods, unknown names)
 *   byte 1   object path and interface (right, wrong or missing)
 *   then     a NUL-terminated D-Bus signature, then the argument values,
 *            read as the signature asks (integers little endian, strings
 *            as a length byte and bytes, arrays as a count byte, variants
 *            as a length byte and a signature)
 *
 * Two protocol clients with a subscription each are connected, so the
 * listing and eviction methods have something to work on; an evicted one
 * is replaced.  Inputs that sd-bus refuses to marshal are skipped.  Every
 * call must get a reply, the connection must survive, and a normal
 * GetStats afterwards must succeed; abort() otherwise.
 */
#include "../../daemon/admin/dbus.c"

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct harness h;
static sd_bus *srv, *cli;
static struct bus *fbus;
static struct tclient clients[2];
static struct admin_defaults initial_defaults; /* the broker's limits at start */

static const char *const members[] = {
	"ListClients", "ListSubscriptions", "GetStats", "EvictClient", "SetDefaults", "Reload",
	"Get", "Set", "GetAll", "Introspect", "Ping", "Nope", "ClientConnected",
};
static const char *const paths[] = {BUS_PATH, "/", "/org/mmn", "/org/mmn/Broker1/x"};
static const char *const ifaces[] = {BUS_IFACE, NULL, "org.freedesktop.DBus.Properties",
				     "org.freedesktop.DBus.Introspectable", "org.mmn.Broker1.Nope"};

struct cursor {
	const uint8_t *p;
	size_t n;
};

static bool take(struct cursor *c, void *out, size_t len)
{
	memset(out, 0, len);
	if (c->n < len) {
		memcpy(out, c->p, c->n);
		c->p += c->n;
		c->n = 0;
		return false;
	}
	memcpy(out, c->p, len);
	c->p += len;
	c->n -= len;
	return true;
}

/* A length byte and that many bytes, as a C string in @buf (256 bytes). */
static void take_str(struct cursor *c, char *buf)
{
	uint8_t len = 0;

	take(c, &len, 1);
	if (len > c->n)
		len = (uint8_t)c->n;
	memcpy(buf, c->p, len);
	buf[len] = 0;
	c->p += len;
	c->n -= len;
}

/* Length of the single complete type at @s, 0 when there is none. */
static size_t type_len(const char *s, int depth)
{
	size_t n;

	if (depth > 16 || !*s)
		return 0;
	switch (*s) {
	case 'a':
		if (s[1] == '{') {
			size_t k = type_len(s + 2, depth + 1), v;

			if (!k || !(v = type_len(s + 2 + k, depth + 1)) || s[2 + k + v] != '}')
				return 0;
			return k + v + 3;
		}
		n = type_len(s + 1, depth + 1);
		return n ? n + 1 : 0;
	case '(':
		for (n = 1; s[n] && s[n] != ')';) {
			size_t k = type_len(s + n, depth + 1);

			if (!k)
				return 0;
			n += k;
		}
		return s[n] == ')' && n > 1 ? n + 1 : 0;
	default:
		return strchr("ybnqiuxtdsogvh", *s) ? 1 : 0;
	}
}

static int append_one(sd_bus_message *m, const char *t, size_t tlen, struct cursor *c, int depth);

static int append_container(sd_bus_message *m, const char *t, size_t tlen, struct cursor *c, int depth)
{
	char inner[256];
	int r;

	if (t[0] == 'v') {
		size_t k;

		take_str(c, inner);
		k = type_len(inner, depth);
		if (!k || inner[k])
			return -EINVAL;
		r = sd_bus_message_open_container(m, 'v', inner);
		if (r >= 0)
			r = append_one(m, inner, k, c, depth + 1);
	} else if (t[0] == 'a') {
		uint8_t count = 0;

		if (tlen - 1 >= sizeof(inner))
			return -EINVAL;
		memcpy(inner, t + 1, tlen - 1);
		inner[tlen - 1] = 0;
		take(c, &count, 1);
		r = sd_bus_message_open_container(m, 'a', inner);
		for (unsigned i = 0; r >= 0 && i < count % 16u; i++)
			r = append_one(m, inner, tlen - 1, c, depth + 1);
	} else { /* ( ) or { } */
		size_t off = 1;

		if (tlen - 2 >= sizeof(inner))
			return -EINVAL;
		memcpy(inner, t + 1, tlen - 2);
		inner[tlen - 2] = 0;
		r = sd_bus_message_open_container(m, t[0] == '(' ? 'r' : 'e', inner);
		while (r >= 0 && off < tlen - 1) {
			size_t k = type_len(t + off, depth + 1);

			r = k ? append_one(m, t + off, k, c, depth + 1) : -EINVAL;
			off += k;
		}
	}
	return r < 0 ? r : sd_bus_message_close_container(m);
}

static int append_one(sd_bus_message *m, const char *t, size_t tlen, struct cursor *c, int depth)
{
	char s[256];
	union {
		uint8_t y;
		uint16_t q;
		uint32_t u;
		uint64_t t;
		double d;
	} v;

	if (depth > 16)
		return -EINVAL;
	switch (t[0]) {
	case 'y':
		take(c, &v.y, 1);
		return sd_bus_message_append_basic(m, 'y', &v.y);
	case 'b':
		take(c, &v.y, 1);
		v.u = v.y & 1;
		return sd_bus_message_append_basic(m, 'b', &v.u);
	case 'n':
	case 'q':
		take(c, &v.q, 2);
		return sd_bus_message_append_basic(m, t[0], &v.q);
	case 'i':
	case 'u':
		take(c, &v.u, 4);
		return sd_bus_message_append_basic(m, t[0], &v.u);
	case 'x':
	case 't':
	case 'd':
		take(c, &v.t, 8);
		return sd_bus_message_append_basic(m, t[0], &v.t);
	case 's':
	case 'o':
	case 'g':
		take_str(c, s);
		return sd_bus_message_append_basic(m, t[0], s);
	case 'h':
		return -EINVAL; /* no descriptors on this connection */
	default:
		return append_container(m, t, tlen, c, depth);
	}
}

static void process(bool *done)
{
	for (int i = 0; i < 10000 && !*done; i++) {
		int a = sd_bus_process(srv, NULL), b = sd_bus_process(cli, NULL);

		if (a < 0 || b < 0)
			abort(); /* a connection died */
		uv_run(&h.loop, UV_RUN_NOWAIT);
	}
}

static int on_reply(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	*(bool *)ud = true;
	return 0;
}

static void call_and_wait(sd_bus_message *m)
{
	bool done = false;

	if (sd_bus_call_async(cli, NULL, m, on_reply, &done, 0) < 0)
		abort();
	process(&done);
	if (!done)
		abort(); /* mmnd's side never answered */
}

static int on_stats(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	bool *st = ud;

	st[0] = true;
	st[1] = !sd_bus_message_is_method_error(m, NULL);
	return 0;
}

static void check_healthy(void)
{
	sd_bus_message *m = NULL;
	bool st[2] = {false, false};

	if (sd_bus_message_new_method_call(cli, &m, NULL, BUS_PATH, BUS_IFACE, "GetStats") < 0)
		abort();
	if (sd_bus_call_async(cli, NULL, m, on_stats, st, 0) < 0)
		abort();
	sd_bus_message_unref(m);
	process(&st[0]);
	if (!st[1])
		abort();
}

/*
 * Both protocol clients connected and subscribed; replaced when one was
 * evicted.  An input may have lowered the limits (SetDefaults MaxClients=1,
 * HelloTimeoutMSec=1) before evicting, and mmnd is right to refuse the
 * replacement then: the broker's own limits come back first.
 */
static void ensure_clients(void)
{
	struct admin_stats st;

	mmn__admin_stats(h.b, &st);
	if (st.clients == 2)
		return;
	if (mmn__admin_set_defaults(h.b, &initial_defaults) != 0)
		abort();
	for (int i = 0; i < 2; i++) {
		tc_close(&clients[i]);
		h_pump(&h, 4);
	}
	for (int i = 0; i < 2; i++) {
		if (tc_hello(&h, &clients[i]) != 0)
			abort();
		if (!tc_subscribe(&h, &clients[i], 0x200000 + (uint64_t)i * 0x10000, 0x4000, i == 1, 0, NULL))
			abort();
	}
}

static sd_bus *new_end(int fd, bool server)
{
	sd_id128_t id;
	sd_bus *b = NULL;

	if (sd_bus_new(&b) < 0 || sd_bus_set_fd(b, fd, fd) < 0)
		abort();
	if (server && (sd_id128_randomize(&id) < 0 || sd_bus_set_server(b, 1, id) < 0))
		abort();
	if (sd_bus_start(b) < 0)
		abort();
	return b;
}

/* libFuzzer ends with exit(): leave no socket behind. */
static void remove_socket(void)
{
	unlink(h.path);
	rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct admin_observer obs = observer_template;
	int sv[2];

	mmn__log_set_level(LOG_EMERG);
	h_init(&h, NULL);
	atexit(remove_socket);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	srv = new_end(sv[0], true);
	cli = new_end(sv[1], false);
	fbus = calloc(1, sizeof(*fbus));
	if (!fbus)
		abort();
	fbus->loop = &h.loop;
	fbus->broker = h.b;
	fbus->sample_window = uv_now(&h.loop);
	fbus->emit_rl = (struct ratelimit)RATELIMIT_INIT(60000, 5);
	fbus->uv.sd = srv;
	if (sd_bus_add_object_vtable(srv, NULL, BUS_PATH, BUS_IFACE, manager_vtable, fbus) < 0)
		abort();
	obs.ud = fbus;
	mmn__admin_set_observer(h.b, &obs);
	clients[0].fd = clients[1].fd = -1;
	mmn__admin_get_defaults(h.b, &initial_defaults);
	ensure_clients();
	check_healthy();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = {data, size};
	sd_bus_message *m = NULL;
	char sig[256];
	uint8_t sel[2];
	size_t off = 0;
	int r;

	if (!take(&c, sel, 2))
		return 0;
	r = sd_bus_message_new_method_call(cli, &m, NULL, paths[sel[1] % N_ELEMS(paths)],
					   ifaces[(sel[1] / N_ELEMS(paths)) % N_ELEMS(ifaces)],
					   members[sel[0] % N_ELEMS(members)]);
	if (r < 0)
		abort();
	/*
	 * The signature: up to the first NUL, at most 254 characters.  sd-bus
	 * builds a call with a 255-character signature (the D-Bus maximum) but
	 * the receiving sd-bus drops it unanswered: a library matter, not one
	 * of mmnd's, and dbus-daemon stands in front of mmnd anyway.
	 */
	while (off < 254 && c.n && *c.p) {
		sig[off++] = (char)*c.p++;
		c.n--;
	}
	sig[off] = 0;
	if (c.n) {
		c.p++;
		c.n--;
	}
	for (size_t i = 0; r >= 0 && sig[i];) {
		size_t k = type_len(sig + i, 0);

		r = k ? append_one(m, sig + i, k, &c, 0) : -EINVAL;
		i += k;
	}
	if (r >= 0)
		call_and_wait(m);
	sd_bus_message_unref(m);
	check_healthy();
	ensure_clients();
	return 0;
}
