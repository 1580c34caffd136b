/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd: command line, source selection, sockets, systemd notification,
 * signals, then the loop.  The broker itself is in broker.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "admin/admin.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "options.h"
#include "source/source.h"
#include "wire.h"

#ifndef MMN_VERSION
#define MMN_VERSION "0"
#endif

struct mmnd {
	uv_loop_t loop;
	struct broker *broker;
	struct bus *bus;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t watchdog;
	bool watchdog_on;
	uv_timer_t status;
	bool status_on;
	bool stopping;
};

static void notify(const char *state)
{
#ifdef HAVE_SYSTEMD
	sd_notify(0, state);
#endif
}

static void help(void)
{
	printf("Usage: mmnd [OPTIONS...]\n\n"
	       "Broker between the kernel's mmu interval notifiers and user-space clients.\n\n"
	       "  --source=auto|kmod|uffd|test  event source (default auto: kmod when mmn.ko is\n"
	       "                                 loaded, else userfaultfd)\n"
	       "  --socket=PATH                 listen on PATH (default: socket activation, else\n"
	       "                                 %s); only a stale socket there is replaced\n"
	       "  --bus=none|system|session|ADDRESS\n"
	       "                                D-Bus admin API (default: system when started by\n"
	       "                                 systemd, i.e. $NOTIFY_SOCKET is set, else none)\n"
	       "  --ack-timeout-ms=N            default ack deadline (%u; 1..ack cap)\n"
	       "  --ack-cap-ms=N                no deadline exceeds this (%u; 1..%u)\n"
	       "  --max-clients=N               connections in all (%u; 1..%u)\n"
	       "  --max-subs=N                  subscriptions per client (%u; 1..%u)\n"
	       "  --max-queued=N                queued messages per client before coalescing\n"
	       "                                 (%u; 1..%u)\n"
	       "  --max-clients-per-uid=N       connections of one uid, at most max-clients - 1;\n"
	       "                                 root and mmnd's own uid are exempt (%u; 1..%u)\n"
	       "  --max-subs-per-uid=N          subscriptions of one uid (%u; 1..%u)\n"
	       "  --hello-timeout-ms=N          close connections without Hello after N ms\n"
	       "                                 (%u; 1..%u)\n"
	       "  --ready-fd=FD                 write \"READY=1\\n\" to FD when serving, then close it\n"
	       "  --log-level=err|warning|info|debug\n"
	       "  --config=PATH                 settings file, mmnd.conf(5); the command line wins\n"
	       "                                 over it (default %s, may be missing)\n"
	       "  --foreground                  accepted for compatibility; mmnd never forks\n"
	       "  --version, --help\n\n"
	       "See mmnd(8).\n",
	       MMN_DEFAULT_SOCKET, MMN_BROKER_DEFAULT_ACK_TIMEOUT_MS, MMN_BROKER_DEFAULT_ACK_CAP_MS,
	       MMN_BROKER_MAX_ACK_CAP_MS, MMN_BROKER_DEFAULT_MAX_CLIENTS, MMN_BROKER_MAX_CLIENTS_LIMIT,
	       MMN_BROKER_DEFAULT_MAX_SUBS, MMN_BROKER_MAX_SUBS_LIMIT, MMN_BROKER_DEFAULT_MAX_QUEUED,
	       MMN_BROKER_MAX_QUEUED_LIMIT, MMN_BROKER_DEFAULT_MAX_CLIENTS_PER_UID,
	       MMN_BROKER_MAX_CLIENTS_LIMIT, MMN_BROKER_DEFAULT_MAX_SUBS_PER_UID,
	       MMN_BROKER_MAX_SUBS_PER_UID_LIMIT, MMN_BROKER_DEFAULT_HELLO_TIMEOUT_MS,
	       MMN_BROKER_MAX_HELLO_TIMEOUT_MS, MMN_CONFIG_PATH);
}

static int open_source(uv_loop_t *loop, const char *name, struct source **out)
{
	int r;

	if (strcmp(name, "test") == 0)
		return mmn__source_test_new(loop, NULL, NULL, out);
	if (strcmp(name, "kmod") == 0)
		return mmn__source_kmod_new(loop, NULL, NULL, out);
	if (strcmp(name, "uffd") == 0)
		return mmn__source_uffd_new(loop, NULL, NULL, out);
	if (strcmp(name, "auto") != 0)
		return -EINVAL;
	r = mmn__source_kmod_new(loop, NULL, NULL, out);
	if (r == 0)
		return 0;
	mmn__log(LOG_INFO, MMN_MSGID_SOURCE_MISSING,
		 "mmn.ko is not available (%s); using the userfaultfd source: only the clients' own memory, "
		 "events after the fact, acks do not hold the kernel",
		 strerror(-r));
	return mmn__source_uffd_new(loop, NULL, NULL, out);
}

#define MMN_RUN_DIR "/run/mmn"

/*
 * The default socket's directory: created if missing, and only used when it
 * is a real directory (lstat: a symlink is refused, never followed) owned by
 * mmnd's uid and writable by nobody else, so no one else can put or swap
 * names in it.  0 or a negative errno (logged).
 */
static int ensure_run_dir(const char *dir)
{
	struct stat st;
	int r;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		mmn__log(LOG_ERR, NULL, "Failed to create %s: %s", dir, strerror(-r));
		return r;
	}
	if (lstat(dir, &st) < 0) {
		r = -errno;
		mmn__log(LOG_ERR, NULL, "Failed to check %s: %s", dir, strerror(-r));
		return r;
	}
	if (!S_ISDIR(st.st_mode)) {
		mmn__log(LOG_ERR, NULL, "%s exists and is not a directory (a symlink is not accepted)", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		mmn__log(LOG_ERR, NULL, "%s must be owned by uid %u and writable by nobody else", dir,
			 (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

static int listen_sockets(struct broker *b, const char *path)
{
	int n = 0, r;

	if (path)
		return mmn__broker_listen_path(b, path);
#ifdef HAVE_SYSTEMD
	n = sd_listen_fds(1);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
			mmn__log(LOG_ERR, NULL,
				 "Passed descriptor %d is not a listening SOCK_SEQPACKET Unix socket", fd);
			return -EINVAL;
		}
		r = mmn__broker_listen_fd(b, fd);
		if (r < 0)
			return r;
	}
#endif
	if (n > 0)
		return 0;
	r = ensure_run_dir(MMN_RUN_DIR);
	if (r < 0)
		return r;
	return mmn__broker_listen_path(b, MMN_DEFAULT_SOCKET);
}

static void close_cb(uv_handle_t *h)
{
}

/* The D-Bus API is an optional part of mmnd (meson option systemd). */
static int bus_open(uv_loop_t *loop, struct broker *b, enum bus_kind kind, const char *address, struct bus **out)
{
#ifdef HAVE_SYSTEMD
	return mmn__bus_open(loop, b, kind, address, out);
#else
	(void)loop, (void)b, (void)kind, (void)address, (void)out;
	return -EOPNOTSUPP;
#endif
}

static void bus_close(struct bus *bus)
{
#ifdef HAVE_SYSTEMD
	mmn__bus_close(bus);
#else
	(void)bus;
#endif
}

static void stop(struct mmnd *m)
{
	if (m->stopping)
		return;
	m->stopping = true;
	notify("STOPPING=1\nSTATUS=Draining");
	mmn__log(LOG_INFO, MMN_MSGID_STOPPING,
		 "Stopping: acking pending invalidations and closing connections");
	mmn__broker_drain(m->broker);
	if (m->bus)
		bus_close(m->bus);
	m->bus = NULL;
	uv_close((uv_handle_t *)&m->sigterm, close_cb);
	uv_close((uv_handle_t *)&m->sigint, close_cb);
	uv_close((uv_handle_t *)&m->sighup, close_cb);
	if (m->watchdog_on)
		uv_close((uv_handle_t *)&m->watchdog, close_cb);
	if (m->status_on)
		uv_close((uv_handle_t *)&m->status, close_cb);
	mmn__broker_free(m->broker);
	m->broker = NULL;
}

static void signal_cb(uv_signal_t *h, int signum)
{
	struct mmnd *m = h->data;

	if (signum == SIGHUP) {
		char why[512];

		/* mmn__admin_reload() logs what it did or why it refused. */
		notify("RELOADING=1");
		mmn__admin_reload(m->broker, why, sizeof(why));
		notify("READY=1");
		return;
	}
	stop(m);
}

#ifdef HAVE_SYSTEMD
static void watchdog_cb(uv_timer_t *h)
{
	notify("WATCHDOG=1");
}
#endif

/* systemctl status shows this line; refreshed every few seconds under systemd. */
static void status_cb(uv_timer_t *h)
{
	struct mmnd *m = h->data;
	struct admin_stats st;
	const char *name;
	uint64_t mask;
	bool holds;
	char buf[256];

	mmn__admin_stats(m->broker, &st);
	mmn__admin_source(m->broker, &name, &mask, &holds);
	snprintf(buf, sizeof(buf),
		 "STATUS=Serving %llu clients, %llu subscriptions (%llu kernel), source %s; %llu "
		 "invalidations, "
		 "%llu timeouts",
		 (unsigned long long)st.clients, (unsigned long long)st.subscriptions,
		 (unsigned long long)st.kernel_subscriptions, name, (unsigned long long)st.invalidations,
		 (unsigned long long)st.timeouts);
	notify(buf);
}

static void status_start(struct mmnd *m)
{
	if (!getenv("NOTIFY_SOCKET"))
		return;
	uv_timer_init(&m->loop, &m->status);
	m->status.data = m;
	m->status_on = true;
	uv_timer_start(&m->status, status_cb, 5000, 5000);
}

static void watchdog_start(struct mmnd *m)
{
#ifdef HAVE_SYSTEMD
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	uv_timer_init(&m->loop, &m->watchdog);
	m->watchdog_on = true;
	uv_timer_start(&m->watchdog, watchdog_cb, 0, usec / 2000 ? usec / 2000 : 1);
#endif
}

static int parse_bus(const char *s, enum bus_kind *kind, const char **address)
{
	*address = NULL;
	if (strcmp(s, "none") == 0)
		*kind = BUS_NONE;
	else if (strcmp(s, "system") == 0)
		*kind = BUS_SYSTEM;
	else if (strcmp(s, "session") == 0)
		*kind = BUS_SESSION;
	else if (strchr(s, ':'))
		*kind = BUS_ADDRESS, *address = s;
	else
		return -EINVAL;
	return 0;
}

/* The command line and the file; lives as long as main() (the broker keeps &cfg for Reload). */
struct args {
	struct config cfg;
	const char *bus_arg, *bus_address;
	enum bus_kind bus_kind;
	uint32_t ready_fd;
};

enum {
	O_READY_FD = 256,
	O_CONFIG,
	O_FOREGROUND,
	O_VERSION,
	O_KEY = 512, /* + enum config_key: the options the file also sets (config.c's table) */
};

static const struct option other_opts[] = {
	{"ready-fd", required_argument, NULL, O_READY_FD},
	{"config", required_argument, NULL, O_CONFIG},
	{"foreground", no_argument, NULL, O_FOREGROUND},
	{"version", no_argument, NULL, O_VERSION},
	{"help", no_argument, NULL, 'h'},
	{},
};

#define N_LONG_OPTS (CONFIG_N_KEYS + sizeof(other_opts) / sizeof(other_opts[0]))

/* config.c's keys, then the command-line-only options. */
static void build_long_opts(struct option *lo)
{
	for (int k = 0; k < CONFIG_N_KEYS; k++)
		lo[k] = (struct option){mmn__config_key_name((enum config_key)k), required_argument, NULL,
					O_KEY + k};
	memcpy(lo + CONFIG_N_KEYS, other_opts, sizeof(other_opts));
}

/* One option; -1: exit 1 (said why), 1: exit 0, 0: go on. */
static int parse_one(int c, struct args *a)
{
	char why[256];

	if (c >= O_KEY && c < O_KEY + CONFIG_N_KEYS) {
		if (mmn__config_set(&a->cfg.cmdline, (enum config_key)(c - O_KEY), optarg, why,
				    sizeof(why)) == 0)
			return 0;
		fprintf(stderr, "mmnd: --%s %s\n", mmn__config_key_name((enum config_key)(c - O_KEY)), why);
		return -1;
	}
	switch (c) {
	case O_READY_FD:
		if (mmn__option_parse_u32(optarg, 0, INT32_MAX, &a->ready_fd) < 0) {
			fprintf(stderr, "mmnd: --ready-fd must be a descriptor number, not '%s'\n", optarg);
			return -1;
		}
		return 0;
	case O_CONFIG:
		a->cfg.path = optarg;
		a->cfg.explicit_path = true;
		return 0;
	case O_FOREGROUND:
		return 0;
	case O_VERSION:
		printf("mmnd %s (protocol %d)\n", MMN_VERSION, MMN_PROTO_VERSION);
		return 1;
	case 'h':
		help();
		return 1;
	default:
		fprintf(stderr, "Try 'mmnd --help'.\n");
		return -1;
	}
}

/* The command line, then the file under it, into @a; -1: exit 1 (said why), 1: exit 0, 0: go on. */
static int parse_args(int argc, char **argv, struct args *a)
{
	struct option lo[N_LONG_OPTS];
	struct config_settings *s = &a->cfg.running;
	char why[512];
	int c, r;

	*a = (struct args){.cfg = {.path = MMN_CONFIG_PATH}, .ready_fd = UINT32_MAX};
	mmn__config_settings_init(&a->cfg.cmdline);
	build_long_opts(lo);
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) >= 0) {
		r = parse_one(c, a);
		if (r != 0)
			return r;
	}
	if (optind < argc) {
		fprintf(stderr, "mmnd: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (mmn__config_load(&a->cfg, s, why, sizeof(why)) < 0) {
		fprintf(stderr, "mmnd: %s\n", why);
		return -1;
	}
	mmn__log_set_level(s->log_level);
	a->bus_arg = s->bus[0] ? s->bus : getenv("NOTIFY_SOCKET") ? "system" : "none";
	if (parse_bus(a->bus_arg, &a->bus_kind, &a->bus_address) < 0) {
		fprintf(stderr, "mmnd: bad --bus value '%s'\n", a->bus_arg);
		return -1;
	}
	return 0;
}

/* Why listening failed, in words for the two refusals of broker.h. */
static void log_listen_error(const char *path, int r)
{
	if (!path)
		path = MMN_DEFAULT_SOCKET;
	if (r == -ENOTSOCK)
		mmn__log(LOG_ERR, NULL, "%s exists and is not a socket; refusing to replace it", path);
	else if (r == -EADDRINUSE)
		mmn__log(LOG_ERR, NULL, "Another mmnd listens on %s", path);
	else
		mmn__log(LOG_ERR, NULL, "Failed to listen on %s: %s", path, strerror(-r));
}

/* Serving: tell systemd, the log and --ready-fd. */
static void announce_ready(struct mmnd *m, uint32_t ready_fd)
{
	static const char msg[] = "READY=1\n";
	const char *name;
	uint64_t mask;
	bool holds;
	char status[160];

	mmn__admin_source(m->broker, &name, &mask, &holds);
	snprintf(status, sizeof(status), "READY=1\nSTATUS=Serving, source %s%s", name,
		 holds ? "" : " (acks do not hold the kernel)");
	notify(status);
	mmn__log(LOG_INFO, MMN_MSGID_STARTED, "mmnd %s serving with the %s source", MMN_VERSION, name);
	if (ready_fd == UINT32_MAX)
		return;
	if (write((int)ready_fd, msg, sizeof(msg) - 1) < 0)
		mmn__log(LOG_WARNING, NULL, "Failed to write to --ready-fd, ignoring: %s", strerror(errno));
	close((int)ready_fd);
}

/*
 * The ack path must not wait for a page to come back from swap while the
 * kernel reclaims: what is mapped now is locked and faulted in, and every
 * later page is locked from its first touch.  From the first touch, not at
 * map time: each client's sequence and waiter pages are sized for max-subs
 * slots (9 MiB at the default 2^20) but only the slots in use are touched,
 * and a locked-at-map-time page would cost mmnd all 9 MiB per connection.
 */
static void lock_memory(void)
{
	if (mlockall(MCL_CURRENT) < 0 || mlockall(MCL_FUTURE | MCL_ONFAULT) < 0)
		mmn__log(LOG_WARNING, NULL, "Failed to lock memory, continuing: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	struct args a;
	struct source *src = NULL;
	struct mmnd m = {0};
	const char *socket_path;
	int r;

	r = parse_args(argc, argv, &a);
	if (r != 0)
		return r < 0 ? 1 : 0;

	signal(SIGPIPE, SIG_IGN);
	lock_memory();

	r = uv_loop_init(&m.loop);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to create the event loop: %s", uv_strerror(r));
		return 1;
	}
	r = open_source(&m.loop, a.cfg.running.source, &src);
	if (r < 0) {
		mmn__log(LOG_ERR, MMN_MSGID_SOURCE_MISSING, "Failed to open the %s event source: %s",
			 a.cfg.running.source, strerror(-r));
		goto fail_loop;
	}
	r = mmn__broker_new(&m.loop, src, &a.cfg.running.o, &m.broker);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to start the broker: %s", strerror(-r));
		goto fail_loop;
	}
	mmn__admin_set_config(m.broker, &a.cfg);
	socket_path = a.cfg.running.socket[0] ? a.cfg.running.socket : NULL;
	r = listen_sockets(m.broker, socket_path);
	if (r < 0) {
		log_listen_error(socket_path, r);
		goto fail;
	}
	if (a.bus_kind != BUS_NONE) {
		r = bus_open(&m.loop, m.broker, a.bus_kind, a.bus_address, &m.bus);
		if (r < 0) {
			mmn__log(LOG_ERR, NULL, "Failed to open the D-Bus API on %s: %s", a.bus_arg,
				 strerror(-r));
			goto fail;
		}
	}
	m.sigterm.data = m.sigint.data = m.sighup.data = &m;
	uv_signal_init(&m.loop, &m.sigterm);
	uv_signal_init(&m.loop, &m.sigint);
	uv_signal_init(&m.loop, &m.sighup);
	uv_signal_start(&m.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&m.sigint, signal_cb, SIGINT);
	uv_signal_start(&m.sighup, signal_cb, SIGHUP);
	watchdog_start(&m);
	status_start(&m);

	announce_ready(&m, a.ready_fd);
	uv_run(&m.loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&m.loop);
	if (r < 0)
		mmn__log(LOG_WARNING, NULL, "Event loop closed with handles open: %s", uv_strerror(r));
	return 0;
fail:
	if (m.bus)
		bus_close(m.bus);
	mmn__broker_free(m.broker);
fail_loop:
	/* Let close callbacks (the source's, the broker's) run, then release the loop. */
	uv_run(&m.loop, UV_RUN_DEFAULT);
	uv_loop_close(&m.loop);
	return 1;
}
