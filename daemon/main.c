/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd: command line, source selection, sockets, systemd notification,
 * signals, then the loop.  The broker itself is in broker.c.
 */
#include <errno.h>
#include <getopt.h>
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

#include "admin.h"
#include "broker.h"
#include "log.h"
#include "source.h"
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
	       "                                 %s)\n"
	       "  --bus=none|system|session|ADDRESS\n"
	       "                                D-Bus admin API (default: system when started by\n"
	       "                                 systemd, i.e. $NOTIFY_SOCKET is set, else none)\n"
	       "  --ack-timeout-ms=N            default ack deadline (%u)\n"
	       "  --ack-cap-ms=N                no deadline exceeds this (%u)\n"
	       "  --max-clients=N               (%u)\n"
	       "  --max-subs=N                  subscriptions per client (%u)\n"
	       "  --max-queued=N                queued messages per client before coalescing (%u)\n"
	       "  --ready-fd=FD                 write \"READY=1\\n\" to FD when serving, then close it\n"
	       "  --log-level=err|warning|info|debug\n"
	       "  --foreground                  accepted for compatibility; mmnd never forks\n"
	       "  --version, --help\n\n"
	       "See mmnd(8).\n",
	       MMN_DEFAULT_SOCKET, MMN_BROKER_DEFAULT_ACK_TIMEOUT_MS, MMN_BROKER_DEFAULT_ACK_CAP_MS,
	       MMN_BROKER_DEFAULT_MAX_CLIENTS, MMN_BROKER_DEFAULT_MAX_SUBS, MMN_BROKER_DEFAULT_MAX_QUEUED);
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v > UINT32_MAX || s[0] == '-')
		return -EINVAL;
	*out = (uint32_t)v;
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
	mkdir("/run/mmn", 0755);
	return mmn__broker_listen_path(b, MMN_DEFAULT_SOCKET);
}

static void close_cb(uv_handle_t *h)
{
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
		mmn__bus_close(m->bus);
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

static void watchdog_cb(uv_timer_t *h)
{
	notify("WATCHDOG=1");
}

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

int main(int argc, char **argv)
{
	enum {
		O_SOURCE = 256,
		O_SOCKET,
		O_BUS,
		O_ACK_TIMEOUT,
		O_ACK_CAP,
		O_MAX_CLIENTS,
		O_MAX_SUBS,
		O_MAX_QUEUED,
		O_READY_FD,
		O_LOG_LEVEL,
		O_FOREGROUND,
		O_VERSION
	};
	static const struct option opts[] = {{"source", required_argument, NULL, O_SOURCE},
					     {"socket", required_argument, NULL, O_SOCKET},
					     {"bus", required_argument, NULL, O_BUS},
					     {"ack-timeout-ms", required_argument, NULL, O_ACK_TIMEOUT},
					     {"ack-cap-ms", required_argument, NULL, O_ACK_CAP},
					     {"max-clients", required_argument, NULL, O_MAX_CLIENTS},
					     {"max-subs", required_argument, NULL, O_MAX_SUBS},
					     {"max-queued", required_argument, NULL, O_MAX_QUEUED},
					     {"ready-fd", required_argument, NULL, O_READY_FD},
					     {"log-level", required_argument, NULL, O_LOG_LEVEL},
					     {"foreground", no_argument, NULL, O_FOREGROUND},
					     {"version", no_argument, NULL, O_VERSION},
					     {"help", no_argument, NULL, 'h'},
					     {}};
	const char *source_name = "auto", *socket_path = NULL, *bus_arg = NULL, *bus_address = NULL;
	enum bus_kind bus_kind = BUS_NONE;
	struct broker_options o;
	struct source *src = NULL;
	struct mmnd m = {0};
	uint32_t ready_fd = UINT32_MAX;
	int c, r;

	mmn__broker_options_default(&o);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		r = 0;
		switch (c) {
		case O_SOURCE:
			source_name = optarg;
			break;
		case O_SOCKET:
			socket_path = optarg;
			break;
		case O_BUS:
			bus_arg = optarg;
			break;
		case O_ACK_TIMEOUT:
			r = parse_u32(optarg, &o.ack_timeout_ms);
			break;
		case O_ACK_CAP:
			r = parse_u32(optarg, &o.ack_cap_ms);
			break;
		case O_MAX_CLIENTS:
			r = parse_u32(optarg, &o.max_clients);
			break;
		case O_MAX_SUBS:
			r = parse_u32(optarg, &o.max_subs);
			break;
		case O_MAX_QUEUED:
			r = parse_u32(optarg, &o.max_queued);
			break;
		case O_READY_FD:
			r = parse_u32(optarg, &ready_fd);
			break;
		case O_LOG_LEVEL:
			r = mmn__log_parse_level(optarg);
			if (r >= 0)
				mmn__log_set_level(r);
			break;
		case O_FOREGROUND:
			break;
		case O_VERSION:
			printf("mmnd %s (protocol %d)\n", MMN_VERSION, MMN_PROTO_VERSION);
			return 0;
		case 'h':
			help();
			return 0;
		default:
			fprintf(stderr, "Try 'mmnd --help'.\n");
			return 1;
		}
		if (r < 0) {
			fprintf(stderr, "mmnd: bad value for --%s: %s\n", opts[c - O_SOURCE].name, optarg);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mmnd: unexpected argument '%s'\n", argv[optind]);
		return 1;
	}
	if (o.ack_timeout_ms > o.ack_cap_ms && o.ack_cap_ms)
		o.ack_timeout_ms = o.ack_cap_ms;
	if (mmn__broker_options_check(&o) < 0) {
		fprintf(stderr, "mmnd: inconsistent limits (ack timeout 1..cap, cap 1..%u, max-subs 1..%u)\n",
			MMN_BROKER_MAX_ACK_CAP_MS, MMN_BROKER_MAX_SUBS_LIMIT);
		return 1;
	}
	if (!bus_arg)
		bus_arg = getenv("NOTIFY_SOCKET") ? "system" : "none";
	if (parse_bus(bus_arg, &bus_kind, &bus_address) < 0) {
		fprintf(stderr, "mmnd: bad --bus value '%s'\n", bus_arg);
		return 1;
	}

	signal(SIGPIPE, SIG_IGN);
	/* The ack path must not wait for memory while the kernel reclaims. */
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		mmn__log(LOG_WARNING, NULL, "Failed to lock memory, continuing: %s", strerror(errno));

	r = uv_loop_init(&m.loop);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to create the event loop: %s", uv_strerror(r));
		return 1;
	}
	r = open_source(&m.loop, source_name, &src);
	if (r < 0) {
		mmn__log(LOG_ERR, MMN_MSGID_SOURCE_MISSING, "Failed to open the %s event source: %s",
			 source_name, strerror(-r));
		goto fail_loop;
	}
	r = mmn__broker_new(&m.loop, src, &o, &m.broker);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to start the broker: %s", strerror(-r));
		goto fail_loop;
	}
	r = listen_sockets(m.broker, socket_path);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Failed to listen on %s: %s",
			 socket_path ? socket_path : "the socket", strerror(-r));
		goto fail;
	}
	if (bus_kind != BUS_NONE) {
		r = mmn__bus_open(&m.loop, m.broker, bus_kind, bus_address, &m.bus);
		if (r < 0) {
			mmn__log(LOG_ERR, NULL, "Failed to open the D-Bus API on %s: %s", bus_arg,
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

	{
		const char *name;
		uint64_t mask;
		bool holds;
		char status[160];

		mmn__admin_source(m.broker, &name, &mask, &holds);
		snprintf(status, sizeof(status), "READY=1\nSTATUS=Serving, source %s%s", name,
			 holds ? "" : " (acks do not hold the kernel)");
		notify(status);
		mmn__log(LOG_INFO, MMN_MSGID_STARTED, "mmnd %s serving with the %s source", MMN_VERSION,
			 name);
	}
	if (ready_fd != UINT32_MAX) {
		static const char msg[] = "READY=1\n";

		if (write((int)ready_fd, msg, sizeof(msg) - 1) < 0)
			mmn__log(LOG_WARNING, NULL, "Failed to write to --ready-fd, ignoring: %s",
				 strerror(errno));
		close((int)ready_fd);
	}

	uv_run(&m.loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&m.loop);
	if (r < 0)
		mmn__log(LOG_WARNING, NULL, "Event loop closed with handles open: %s", uv_strerror(r));
	return 0;
fail:
	if (m.bus)
		mmn__bus_close(m.bus);
	mmn__broker_free(m.broker);
fail_loop:
	/* Let close callbacks (the source's, the broker's) run, then release the loop. */
	uv_run(&m.loop, UV_RUN_DEFAULT);
	uv_loop_close(&m.loop);
	return 1;
}
