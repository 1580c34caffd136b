/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "openmetrics.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "json.h"

/* The GetStats keys this mmnctl knows (man org.mmn.Broker1(5)). */
static const struct {
	const char *key;
	const char *type;
	const char *help;
} known[] = {
	{"Clients", "gauge", "Connected clients"},
	{"Subscriptions", "gauge", "Live subscriptions"},
	{"KernelSubscriptions", "gauge", "Subscriptions held in the event source"},
	{"Invalidations", "counter", "Source invalidations fanned out"},
	{"BlockingAcks", "counter", "Acks received from blocking clients"},
	{"Timeouts", "counter", "Blocking acks that missed their deadline"},
	{"Evictions", "counter", "Clients evicted (deadline or administrator)"},
	{"NonBlockableRefusals", "counter", "Non-blockable invalidations refused"},
	{"QueueOverflows", "counter", "Non-blocking client queues that overflowed and coalesced"},
	{"ProtocolErrors", "counter", "Clients dropped for bad messages"},
	{"ImpliedEnds", "counter", "Events ended by a later END of their target"},
	{"EndTimeouts", "counter", "Events ended by the END timer (a lost END)"},
};

/* mmn_ and @key in snake case, anything but [a-z0-9_] as '_'. */
static void metric_name(const char *key, char *buf, size_t size)
{
	char snake[96];

	json_snake_case(key, snake, sizeof(snake));
	for (char *p = snake; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			*p = '_';
	snprintf(buf, size, "mmn_%s", snake);
}

static void write_stat(FILE *f, const struct om_stat *st)
{
	const char *type = "unknown", *help = NULL;
	char name[112];

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(known[i].key, st->key) == 0) {
			type = known[i].type;
			help = known[i].help;
		}
	metric_name(st->key, name, sizeof(name));
	fprintf(f, "# TYPE %s %s\n", name, type);
	if (help)
		fprintf(f, "# HELP %s %s\n", name, help);
	fprintf(f, "%s%s %" PRIu64 "\n", name, strcmp(type, "counter") == 0 ? "_total" : "", st->value);
}

/* A label value, escaped: backslash, double quote and newline. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*s, f);
	}
}

static void labels(FILE *f, const struct client_hist *c)
{
	fputs("client=\"", f);
	label_value(f, c->name ? c->name : "");
	fprintf(f, "\",id=\"%" PRIu64 "\",pid=\"%" PRIu32 "\"", c->id, c->pid);
}

/* @ns as seconds, exactly: "0.000001000". */
static void seconds(FILE *f, uint64_t ns)
{
	fprintf(f, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}

static void write_hist(FILE *f, const struct client_hist *c)
{
	uint64_t cum = 0;

	for (unsigned i = 0; i < c->nbuckets; i++) {
		cum += c->count[i];
		fputs("mmn_ack_latency_seconds_bucket{", f);
		labels(f, c);
		fputs(",le=\"", f);
		if (c->bound_ns[i] == UINT64_MAX)
			fputs("+Inf", f);
		else
			seconds(f, c->bound_ns[i]);
		fprintf(f, "\"} %" PRIu64 "\n", cum);
	}
	/* OpenMetrics wants a +Inf bucket even when the reply had none. */
	if (!c->nbuckets || c->bound_ns[c->nbuckets - 1] != UINT64_MAX) {
		fputs("mmn_ack_latency_seconds_bucket{", f);
		labels(f, c);
		fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	fputs("mmn_ack_latency_seconds_count{", f);
	labels(f, c);
	fprintf(f, "} %" PRIu64 "\n", cum);
	fputs("mmn_ack_latency_seconds_sum{", f);
	labels(f, c);
	fputs("} ", f);
	seconds(f, c->sum_ns);
	fputc('\n', f);
}

int om_write(FILE *f, const struct om_stat *stats, size_t nstats, const struct client_hist *clients,
	     size_t nclients)
{
	for (size_t i = 0; i < nstats; i++)
		write_stat(f, &stats[i]);
	fputs("# TYPE mmn_ack_latency_seconds histogram\n"
	      "# UNIT mmn_ack_latency_seconds seconds\n"
	      "# HELP mmn_ack_latency_seconds Blocking-ack latency per client, from the invalidation to its "
	      "ack\n",
	      f);
	for (size_t i = 0; i < nclients; i++)
		write_hist(f, &clients[i]);
	fputs("# TYPE mmn_deadline_misses counter\n"
	      "# HELP mmn_deadline_misses Subscriptions a client lost for a missed ack deadline\n",
	      f);
	for (size_t i = 0; i < nclients; i++) {
		fputs("mmn_deadline_misses_total{", f);
		labels(f, &clients[i]);
		fprintf(f, "} %" PRIu64 "\n", clients[i].misses);
	}
	fputs("# EOF\n", f);
	return ferror(f) ? -EIO : 0;
}
