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
	       "  --foreground                  accepted for compatibility; mmnd never forks\n"
	       "  --version, --help\n\n"
	       "See mmnd(8).\n",
	       MMN_DEFAULT_SOCKET, MMN_BROKER_DEFAULT_ACK_TIMEOUT_MS, MMN_BROKER_DEFAULT_ACK_CAP_MS,
	       MMN_BROKER_MAX_ACK_CAP_MS, MMN_BROKER_DEFAULT_MAX_CLIENTS, MMN_BROKER_MAX_CLIENTS_LIMIT,
	       MMN_BROKER_DEFAULT_MAX_SUBS, MMN_BROKER_MAX_SUBS_LIMIT, MMN_BROKER_DEFAULT_MAX_QUEUED,
	       MMN_BROKER_MAX_QUEUED_LIMIT, MMN_BROKER_DEFAULT_MAX_CLIENTS_PER_UID,
	       MMN_BROKER_MAX_CLIENTS_LIMIT, MMN_BROKER_DEFAULT_MAX_SUBS_PER_UID,
	       MMN_BROKER_MAX_SUBS_PER_UID_LIMIT, MMN_BROKER_DEFAULT_HELLO_TIMEOUT_MS,
	       MMN_BROKER_MAX_HELLO_TIMEOUT_MS);
}

/* The numeric options: where each goes and its range (the broker's, see broker.h). */
struct num_opt {
	const char *name;
	size_t off; /* in struct broker_options */
	uint32_t min, max;
};

static const struct num_opt num_opts[] = {
	{"ack-timeout-ms", offsetof(struct broker_options, ack_timeout_ms), 1, MMN_BROKER_MAX_ACK_CAP_MS},
	{"ack-cap-ms", offsetof(struct broker_options, ack_cap_ms), 1, MMN_BROKER_MAX_ACK_CAP_MS},
	{"max-clients", offsetof(struct broker_options, max_clients), 1, MMN_BROKER_MAX_CLIENTS_LIMIT},
	{"max-subs", offsetof(struct broker_options, max_subs), 1, MMN_BROKER_MAX_SUBS_LIMIT},
	{"max-queued", offsetof(struct broker_options, max_queued), 1, MMN_BROKER_MAX_QUEUED_LIMIT},
	{"max-clients-per-uid", offsetof(struct broker_options, max_clients_per_uid), 1,
	 MMN_BROKER_MAX_CLIENTS_LIMIT},
	{"max-subs-per-uid", offsetof(struct broker_options, max_subs_per_uid), 1,
	 MMN_BROKER_MAX_SUBS_PER_UID_LIMIT},
	{"hello-timeout-ms", offsetof(struct broker_options, hello_timeout_ms), 1,
	 MMN_BROKER_MAX_HELLO_TIMEOUT_MS},
};

#define N_NUM_OPTS (sizeof(num_opts) / sizeof(num_opts[0]))

/* Parse --NAME=@arg into @o; prints why not and returns -1. */
static int parse_num_opt(const struct num_opt *n, const char *arg, struct broker_options *o)
{
	uint32_t *field = (uint32_t *)((char *)o + n->off);
	int r = mmn__option_parse_u32(arg, n->min, n->max, field);

	if (r < 0) {
		fprintf(stderr,
			"mmnd: --%s is out of range or not a number: it must be an integer between %" PRIu32
			" and %" PRIu32 ", not '%s'\n",
			n->name, n->min, n->max, arg);
		return -1;
	}
	return 0;
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
	mmn__log(LOG_INFO, NULL, "Stopping: acking pending invalidations and closing connections");
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
		notify("RELOADING=1");
		mmn__admin_reload(m->broker);
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

struct args {
	const char *source_name, *socket_path, *bus_arg, *bus_address;
	enum bus_kind bus_kind;
	struct broker_options o;
	uint32_t ready_fd;
};

enum {
	O_SOURCE = 256,
	O_SOCKET,
	O_BUS,
	O_READY_FD,
	O_LOG_LEVEL,
	O_FOREGROUND,
	O_VERSION,
	O_NUM = 512, /* + index in num_opts */
};

static const struct option long_opts[] = {
	{"source", required_argument, NULL, O_SOURCE},
	{"socket", required_argument, NULL, O_SOCKET},
	{"bus", required_argument, NULL, O_BUS},
	{"ack-timeout-ms", required_argument, NULL, O_NUM + 0},
	{"ack-cap-ms", required_argument, NULL, O_NUM + 1},
	{"max-clients", required_argument, NULL, O_NUM + 2},
	{"max-subs", required_argument, NULL, O_NUM + 3},
	{"max-queued", required_argument, NULL, O_NUM + 4},
	{"max-clients-per-uid", required_argument, NULL, O_NUM + 5},
	{"max-subs-per-uid", required_argument, NULL, O_NUM + 6},
	{"hello-timeout-ms", required_argument, NULL, O_NUM + 7},
	{"ready-fd", required_argument, NULL, O_READY_FD},
	{"log-level", required_argument, NULL, O_LOG_LEVEL},
	{"foreground", no_argument, NULL, O_FOREGROUND},
	{"version", no_argument, NULL, O_VERSION},
	{"help", no_argument, NULL, 'h'},
	{},
};

/* One option; -1: exit 1 (said why), 1: exit 0, 0: go on. */
static int parse_one(int c, struct args *a)
{
	int r;

	if (c >= O_NUM && c < O_NUM + (int)N_NUM_OPTS)
		return parse_num_opt(&num_opts[c - O_NUM], optarg, &a->o);
	switch (c) {
	case O_SOURCE:
		a->source_name = optarg;
		return 0;
	case O_SOCKET:
		a->socket_path = optarg;
		return 0;
	case O_BUS:
		a->bus_arg = optarg;
		return 0;
	case O_READY_FD:
		if (mmn__option_parse_u32(optarg, 0, INT32_MAX, &a->ready_fd) < 0) {
			fprintf(stderr, "mmnd: --ready-fd must be a descriptor number, not '%s'\n", optarg);
			return -1;
		}
		return 0;
	case O_LOG_LEVEL:
		r = mmn__log_parse_level(optarg);
		if (r < 0) {
			fprintf(stderr, "mmnd: --log-level must be err, warning, info or debug, not '%s'\n",
				optarg);
			return -1;
		}
		mmn__log_set_level(r);
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

/* The command line into @a; -1: exit 1 (said why), 1: exit 0, 0: go on. */
static int parse_args(int argc, char **argv, struct args *a)
{
	bool timeout_given = false;
	const char *why;
	int c, r;

	*a = (struct args){.source_name = "auto", .ready_fd = UINT32_MAX};
	mmn__broker_options_default(&a->o);
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) >= 0) {
		timeout_given = timeout_given || c == O_NUM + 0;
		r = parse_one(c, a);
		if (r != 0)
			return r;
	}
	if (optind < argc) {
		fprintf(stderr, "mmnd: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	/* A lower cap alone lowers the default deadline with it. */
	if (!timeout_given && a->o.ack_timeout_ms > a->o.ack_cap_ms)
		a->o.ack_timeout_ms = a->o.ack_cap_ms;
	if (mmn__broker_options_explain(&a->o, &why) < 0) {
		fprintf(stderr, "mmnd: %s\n", why);
		return -1;
	}
	if (!a->bus_arg)
		a->bus_arg = getenv("NOTIFY_SOCKET") ? "system" : "none";
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

int main(int argc, char **argv)
{
	struct args a;
	struct source *src = NULL;
	struct mmnd m = {0};
	int r;

	r = parse_args(argc, argv, &a);
	if (r != 0)
		return r < 0 ? 1 : 0;

	signal(SIGPIPE, SIG_IGN);
	/* The ack path must not wait for memory while the kernel reclaims. */
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		mmn__log(LOG_WARNING, NULL, "Failed to lock memory, continuing: %s", strerror(errno));

	r = uv_loop_init(&m.loop);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to create the event loop: %s", uv_strerror(r));
		return 1;
	}
	r = open_source(&m.loop, a.source_name, &src);
	if (r < 0) {
		mmn__log(LOG_ERR, MMN_MSGID_SOURCE_MISSING, "Failed to open the %s event source: %s",
			 a.source_name, strerror(-r));
		goto fail_loop;
	}
	r = mmn__broker_new(&m.loop, src, &a.o, &m.broker);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to start the broker: %s", strerror(-r));
		goto fail_loop;
	}
	r = listen_sockets(m.broker, a.socket_path);
	if (r < 0) {
		log_listen_error(a.socket_path, r);
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
