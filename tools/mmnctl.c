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

#include "mmnctl.h"

#ifndef MMN_VERSION
#define MMN_VERSION "unknown"
#endif

enum json_mode arg_json = JSON_OFF;
enum stats_format arg_format = FORMAT_TEXT;
bool arg_legend = true;
uint64_t arg_client;
uint32_t arg_pid;
static bool arg_pager = true;
static const char *arg_bus; /* NULL: $MMN_BUS_ADDRESS, else system */

static pid_t pager_pid;

/* A usage error: message, hint, exit 2. */
int ctl_usage_error(const char *fmt, ...)
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

void ctl_pager_open(void)
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
int ctl_bus_failure(const sd_bus_error *e, int r, const char *what)
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
int ctl_call(sd_bus *bus, const char *method, sd_bus_message **reply, const char *what, const char *types,
	     ...)
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
		r = ctl_bus_failure(&e, r, what);
	sd_bus_error_free(&e);
	return r;
}

void ctl_json_begin(struct json *j)
{
	json_init(j, stdout, arg_json == JSON_PRETTY);
}

int ctl_parse_u64(const char *s, uint64_t *out)
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

/* Verbs: name, argument count (the verb included), handler. */
static const struct verb {
	const char *name;
	int min_args, max_args;
	bool reads; /* a read command: --json applies */
	int (*fn)(sd_bus *bus, int argc, char **argv);
	const char *help;
} verbs[] = {
	{"status", 1, 1, true, verb_status, "Show mmnd's source, counts and defaults (default)"},
	{"clients", 1, 1, true, verb_clients, "List connected clients"},
	{"subscriptions", 1, 1, true, verb_subscriptions, "List subscriptions [--client ID | --pid PID]"},
	{"stats", 1, 1, true, verb_stats, "Show counters and per-client ack latency [--format=openmetrics]"},
	{"evict", 2, 2, false, verb_evict, "Evict client ID (root)"},
	{"set-default", 2, INT_MAX, false, verb_set_default, "Set KEY=VALUE... defaults (root)"},
	{"reload", 1, 1, false, verb_reload, "Re-read configuration (root)"},
	{"monitor", 1, 1, true, verb_monitor, "Print signals as they arrive"},
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
	       "     --format=FORMAT   stats: text (default) or openmetrics\n"
	       "\nKeys for set-default: ack-timeout-ms, ack-cap-ms, max-clients, max-subs, max-queued,\n"
	       "max-clients-per-uid, max-subs-per-uid, hello-timeout-ms.\n"
	       "Exit status: 0 success, 1 failure, 2 usage error.\n"
	       "\nSee the mmnctl(1) man page for details.\n");
}

enum { ARG_VERSION = 0x100, ARG_JSON, ARG_NO_LEGEND, ARG_NO_PAGER, ARG_BUS, ARG_CLIENT, ARG_PID, ARG_FORMAT };

static int parse_argv(int argc, char **argv)
{
	static const struct option options[] = {{"help", no_argument, NULL, 'h'},
						{"version", no_argument, NULL, ARG_VERSION},
						{"json", required_argument, NULL, ARG_JSON},
						{"no-legend", no_argument, NULL, ARG_NO_LEGEND},
						{"no-pager", no_argument, NULL, ARG_NO_PAGER},
						{"bus", required_argument, NULL, ARG_BUS},
						{"client", required_argument, NULL, ARG_CLIENT},
						{"pid", required_argument, NULL, ARG_PID},
						{"format", required_argument, NULL, ARG_FORMAT},
						{}};
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
				return ctl_usage_error("unknown --json mode \"%s\" (pretty, short or off)",
						       optarg);
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
			if (ctl_parse_u64(optarg, &v) < 0 || v == 0)
				return ctl_usage_error("invalid client id \"%s\"", optarg);
			arg_client = v;
			break;
		case ARG_PID:
			if (ctl_parse_u64(optarg, &v) < 0 || v == 0 || v > INT32_MAX)
				return ctl_usage_error("invalid pid \"%s\"", optarg);
			arg_pid = (uint32_t)v;
			break;
		case ARG_FORMAT:
			if (strcmp(optarg, "text") == 0)
				arg_format = FORMAT_TEXT;
			else if (strcmp(optarg, "openmetrics") == 0)
				arg_format = FORMAT_OPENMETRICS;
			else
				return ctl_usage_error("unknown --format \"%s\" (text or openmetrics)",
						       optarg);
			break;
		default:
			return -EXIT_USAGE;
		}
	}
	return 1;
}

int main(int argc, char **argv)
{
	static char *default_argv[] = {"status", NULL};
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
		return -ctl_usage_error("unknown command \"%s\"", vargv[0]);
	if (vargc < v->min_args)
		return -ctl_usage_error("too few arguments for \"%s\"", v->name);
	if (vargc > v->max_args)
		return -ctl_usage_error("too many arguments for \"%s\"", v->name);
	if ((arg_client || arg_pid) && v->fn != verb_subscriptions)
		return -ctl_usage_error("--client and --pid apply to \"subscriptions\" only");
	if (arg_client && arg_pid)
		return -ctl_usage_error("--client and --pid are mutually exclusive");
	if (arg_format != FORMAT_TEXT && v->fn != verb_stats)
		return -ctl_usage_error("--format applies to \"stats\" only");
	if (arg_format != FORMAT_TEXT && arg_json != JSON_OFF)
		return -ctl_usage_error("--format=openmetrics and --json are mutually exclusive");
	if (arg_json != JSON_OFF && !v->reads)
		return -ctl_usage_error("--json applies to read commands only");

	if (connect_bus(&bus) < 0)
		return EXIT_FAILURE;
	r = v->fn(bus, vargc, vargv);
	pager_close();
	sd_bus_flush_close_unref(bus);
	if (r == -EXIT_USAGE)
		return EXIT_USAGE;
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
