/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnctl stats: GetStats and GetClientHistograms as text, JSON or
 * OpenMetrics.  An mmnd without GetClientHistograms (older) shows its
 * counters alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"
#include "mmnctl.h"
#include "openmetrics.h"

#define MAX_STATS 64

/* What one stats run read; the strings point into the replies. */
struct stats {
	sd_bus_message *stats_reply, *hist_reply;
	struct om_stat st[MAX_STATS];
	size_t nst;
	struct client_hist *c;
	size_t nc;
};

static int read_stats(sd_bus *bus, struct stats *s)
{
	int r;

	if (ctl_call(bus, "GetStats", &s->stats_reply, "read statistics", NULL) < 0)
		return -1;
	r = sd_bus_message_enter_container(s->stats_reply, 'a', "{st}");
	while (r >= 0 && s->nst < MAX_STATS) {
		struct om_stat *st = &s->st[s->nst];

		r = sd_bus_message_read(s->stats_reply, "{st}", &st->key, &st->value);
		if (r <= 0)
			break;
		s->nst++;
	}
	return r;
}

static int read_one_hist(sd_bus_message *m, struct client_hist *h)
{
	uint64_t bound, count;
	int r;

	r = sd_bus_message_enter_container(m, 'r', "tuusa(tt)tt");
	if (r <= 0)
		return r;
	r = sd_bus_message_read(m, "tuus", &h->id, &h->pid, &h->uid, &h->name);
	if (r >= 0)
		r = sd_bus_message_enter_container(m, 'a', "(tt)");
	while (r >= 0 && (r = sd_bus_message_read(m, "(tt)", &bound, &count)) > 0) {
		if (h->nbuckets == HIST_MAX_BUCKETS)
			return -E2BIG;
		h->bound_ns[h->nbuckets] = bound;
		h->count[h->nbuckets++] = count;
	}
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	if (r >= 0)
		r = sd_bus_message_read(m, "tt", &h->sum_ns, &h->misses);
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	return r < 0 ? r : 1;
}

static int read_hists(sd_bus *bus, struct stats *s)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE, "GetClientHistograms", &e, &s->hist_reply,
			       NULL);
	if (r < 0) {
		bool old = sd_bus_error_has_name(&e, SD_BUS_ERROR_UNKNOWN_METHOD);

		if (!old)
			ctl_bus_failure(&e, r, "read client histograms");
		sd_bus_error_free(&e);
		return old ? 0 : -1;
	}
	r = sd_bus_message_enter_container(s->hist_reply, 'a', "(tuusa(tt)tt)");
	while (r >= 0) {
		struct client_hist *c = realloc(s->c, (s->nc + 1) * sizeof(*c));

		if (!c)
			return -ENOMEM;
		s->c = c;
		memset(&c[s->nc], 0, sizeof(*c));
		r = read_one_hist(s->hist_reply, &c[s->nc]);
		if (r <= 0)
			break;
		s->nc++;
	}
	return r;
}

/* @ns for a person: "850ns", "12.5us", "3.2ms", "1.25s". */
static const char *duration(uint64_t ns, char *buf, size_t size)
{
	if (ns < 1000)
		snprintf(buf, size, "%" PRIu64 "ns", ns);
	else if (ns < 1000000)
		snprintf(buf, size, "%.1fus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, size, "%.1fms", (double)ns / 1e6);
	else
		snprintf(buf, size, "%.2fs", (double)ns / 1e9);
	return buf;
}

static void print_text(const struct stats *s)
{
	char p50[24], p99[24];

	for (size_t i = 0; i < s->nst; i++)
		printf("%22s: %" PRIu64 "\n", s->st[i].key, s->st[i].value);
	if (!s->nc)
		return;
	printf("\n");
	if (arg_legend)
		printf("%6s %8s %-16s %10s %9s %9s %8s\n", "ID", "PID", "NAME", "ACKS", "P50", "P99",
		       "MISSES");
	for (size_t i = 0; i < s->nc; i++) {
		const struct client_hist *c = &s->c[i];
		uint64_t n = hist_count(c);

		printf("%6" PRIu64 " %8" PRIu32 " %-16s %10" PRIu64 " %9s %9s %8" PRIu64 "\n", c->id, c->pid,
		       *c->name ? c->name : "-", n,
		       n ? duration(hist_quantile_ns(c, 0.5), p50, sizeof(p50)) : "-",
		       n ? duration(hist_quantile_ns(c, 0.99), p99, sizeof(p99)) : "-", c->misses);
	}
}

static void print_json(const struct stats *s)
{
	char snake[96];
	struct json j;

	ctl_json_begin(&j);
	json_begin_object(&j);
	for (size_t i = 0; i < s->nst; i++) {
		json_snake_case(s->st[i].key, snake, sizeof(snake));
		json_key(&j, snake);
		json_u64(&j, s->st[i].value);
	}
	/* "clients" is the counter: the per-client figures have their own key. */
	json_key(&j, "client_ack_latency");
	json_begin_array(&j);
	for (size_t i = 0; i < s->nc; i++) {
		const struct client_hist *c = &s->c[i];

		json_begin_object(&j);
		json_key(&j, "id");
		json_u64(&j, c->id);
		json_key(&j, "pid");
		json_u64(&j, c->pid);
		json_key(&j, "name");
		json_string(&j, c->name);
		json_key(&j, "acks");
		json_u64(&j, hist_count(c));
		json_key(&j, "ack_latency_p50_ns");
		json_u64(&j, hist_quantile_ns(c, 0.5));
		json_key(&j, "ack_latency_p99_ns");
		json_u64(&j, hist_quantile_ns(c, 0.99));
		json_key(&j, "ack_latency_sum_ns");
		json_u64(&j, c->sum_ns);
		json_key(&j, "deadline_misses");
		json_u64(&j, c->misses);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_end_object(&j);
	json_finish(&j);
}

int verb_stats(sd_bus *bus, int argc, char **argv)
{
	struct stats s = {0};
	int r;

	r = read_stats(bus, &s);
	if (r >= 0)
		r = read_hists(bus, &s);
	if (r == -1) {
		/* the failure was printed */
	} else if (r < 0) {
		fprintf(stderr, "mmnctl: failed to parse statistics: %s\n", strerror(-r));
	} else if (arg_format == FORMAT_OPENMETRICS) {
		r = om_write(stdout, s.st, s.nst, s.c, s.nc);
		if (r < 0)
			fprintf(stderr, "mmnctl: failed to write the metrics: %s\n", strerror(-r));
	} else if (arg_json != JSON_OFF) {
		print_json(&s);
	} else {
		print_text(&s);
	}
	free(s.c);
	sd_bus_message_unref(s.stats_reply);
	sd_bus_message_unref(s.hist_reply);
	return r < 0 ? -1 : 0;
}
