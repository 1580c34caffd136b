/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tools/openmetrics.c: the exact exposition of counters and histograms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openmetrics.h"
#include "tap.h"

static char *render(const struct om_stat *st, size_t nst, const struct client_hist *c, size_t nc, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	*rc = om_write(f, st, nst, c, nc);
	fclose(f);
	return buf;
}

static void test_exact(void)
{
	static const struct om_stat st[] = {{"Clients", 2}, {"BlockingAcks", 5}, {"SomeNewKey", 3}};
	struct client_hist c = {
		.id = 3,
		.pid = 10,
		.name = "a\"b\\c\nd",
		.nbuckets = 3,
		.bound_ns = {1000, 2000, UINT64_MAX},
		.count = {1, 0, 2},
		.sum_ns = 1500000001,
		.misses = 4,
	};
	const char *want =
		"# TYPE mmn_clients gauge\n"
		"# HELP mmn_clients Connected clients\n"
		"mmn_clients 2\n"
		"# TYPE mmn_blocking_acks counter\n"
		"# HELP mmn_blocking_acks Acks received from blocking clients\n"
		"mmn_blocking_acks_total 5\n"
		"# TYPE mmn_some_new_key unknown\n"
		"mmn_some_new_key 3\n"
		"# TYPE mmn_ack_latency_seconds histogram\n"
		"# UNIT mmn_ack_latency_seconds seconds\n"
		"# HELP mmn_ack_latency_seconds Blocking-ack latency per client, from the invalidation to "
		"its ack\n"
		"mmn_ack_latency_seconds_bucket{client=\"a\\\"b\\\\c\\nd\",id=\"3\",pid=\"10\",le=\"0."
		"000001000\"} 1\n"
		"mmn_ack_latency_seconds_bucket{client=\"a\\\"b\\\\c\\nd\",id=\"3\",pid=\"10\",le=\"0."
		"000002000\"} 1\n"
		"mmn_ack_latency_seconds_bucket{client=\"a\\\"b\\\\c\\nd\",id=\"3\",pid=\"10\",le=\"+Inf\"} "
		"3\n"
		"mmn_ack_latency_seconds_count{client=\"a\\\"b\\\\c\\nd\",id=\"3\",pid=\"10\"} 3\n"
		"mmn_ack_latency_seconds_sum{client=\"a\\\"b\\\\c\\nd\",id=\"3\",pid=\"10\"} 1.500000001\n"
		"# TYPE mmn_deadline_misses counter\n"
		"# HELP mmn_deadline_misses Subscriptions a client lost for a missed ack deadline\n"
		"mmn_deadline_misses_total{client=\"a\\\"b\\\\c\\nd\",id=\"3\",pid=\"10\"} 4\n"
		"# EOF\n";
	int rc = -1;
	char *got = render(st, 3, &c, 1, &rc);

	tap_is_int(rc, 0, "exact: written");
	tap_is_str(got, want,
		   "exact: gauges, counters with _total, unknown keys, cumulative buckets, escaped labels");
	free(got);
}

/* No +Inf bucket in the input (not what mmnd sends): one is added; empty input still ends with # EOF. */
static void test_edges(void)
{
	struct client_hist c = {
		.id = 1, .pid = 2, .name = "", .nbuckets = 1, .bound_ns = {8388608000ull}, .count = {7}};
	int rc = -1;
	char *got = render(NULL, 0, &c, 1, &rc);

	tap_ok(got && strstr(got, "le=\"8.388608000\"} 7\n"),
	       "edges: a finite last bound is printed exactly");
	tap_ok(got && strstr(got, "{client=\"\",id=\"1\",pid=\"2\",le=\"+Inf\"} 7\n"),
	       "edges: a +Inf bucket is added with the total");
	tap_ok(got && strstr(got, "_count{client=\"\",id=\"1\",pid=\"2\"} 7\n"),
	       "edges: _count is the total");
	free(got);
	got = render(NULL, 0, NULL, 0, &rc);
	tap_ok(got && strlen(got) > 6 && strcmp(got + strlen(got) - 6, "# EOF\n") == 0,
	       "edges: no stats and no clients still ends with # EOF");
	tap_ok(got && !strstr(got, "_bucket"), "edges: no clients, no samples");
	free(got);
}

/* A stream that fails: -EIO, not a crash. */
static void test_error(void)
{
	static const struct om_stat st[] = {{"Clients", 1}};
	FILE *f = fopen("/dev/full", "w");

	if (!f) {
		tap_ok(1, "# SKIP no /dev/full");
		return;
	}
	setvbuf(f, NULL, _IONBF, 0);
	tap_is_int(om_write(f, st, 1, NULL, 0), -5, "a write error: -EIO");
	fclose(f);
}

int main(void)
{
	test_exact();
	test_edges();
	test_error();
	return tap_done();
}
