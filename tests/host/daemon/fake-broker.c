/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A scripted stand-in for the broker behind daemon/admin.h, so the D-Bus
 * layer (daemon/dbus.c) is tested on its own: every property, method and
 * signal, with states the real broker reaches only under load.
 *
 *   fake-broker ADDRESS     (MMN_ADMIN_GROUP as for mmnd)
 *
 * It prints "READY" once it owns the bus name, then reads commands on stdin,
 * one per line, and answers each with "ok" (after its signals were queued):
 *   connect ID PID UID NAME | disconnect ID | evicted ID REASON
 *   sub ID CLIENT PID START END FLAGS MASK SEQ KSUB | source NAME | inv N | quit
 * Calls that reach the broker print a line: "evict ID", "reload",
 * "set-defaults T CAP CLIENTS SUBS QUEUED".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "log.h"

#define MAX_ITEMS 16

struct fake_client {
	struct admin_client c;
	char name[64];
};

static struct {
	struct fake_client clients[MAX_ITEMS];
	int nclients;
	struct admin_sub subs[MAX_ITEMS];
	int nsubs;
	struct admin_stats stats;
	struct admin_defaults defaults;
	char source[16];
	struct admin_observer obs;
	bool have_obs;
} fake = {
	.defaults = {1000, 5000, 1024, 1024, 1024, 128, 8192, 5000},
	.source = "test",
};

static uv_loop_t *loop;
static struct bus *bus;
static uv_poll_t input;
static char line[512];
static size_t line_len;

/* log.h, so dbus.c links without the broker: no limits, stderr. */
void mmn__log(int level, const char *msgid, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "<%d>", level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

bool mmn__ratelimit_ok(struct ratelimit *rl, uint64_t now_ms)
{
	return true;
}

/* admin.h */

void mmn__admin_stats(struct broker *b, struct admin_stats *out)
{
	*out = fake.stats;
	out->clients = (uint64_t)fake.nclients;
	out->subscriptions = (uint64_t)fake.nsubs;
	out->kernel_subscriptions = (uint64_t)fake.nsubs;
}

void mmn__admin_get_defaults(struct broker *b, struct admin_defaults *out)
{
	*out = fake.defaults;
}

int mmn__admin_set_defaults(struct broker *b, const struct admin_defaults *d)
{
	if (!d->ack_timeout_ms || d->ack_timeout_ms > d->ack_cap_ms || !d->max_clients)
		return -EINVAL;
	fake.defaults = *d;
	printf("set-defaults %u %u %u %u %u\n", d->ack_timeout_ms, d->ack_cap_ms, d->max_clients,
	       d->max_subs_per_client, d->max_queued_events);
	fflush(stdout);
	return 0;
}

void mmn__admin_source(struct broker *b, const char **name, uint64_t *event_mask, bool *acks_hold_kernel)
{
	bool kmod = strcmp(fake.source, "kmod") == 0;

	*name = fake.source;
	*event_mask = kmod ? 0xff : strcmp(fake.source, "uffd") == 0 ? 0x301 : 0x7ff;
	*acks_hold_kernel = kmod;
}

void mmn__admin_foreach_client(struct broker *b, void (*fn)(const struct admin_client *, void *), void *ud)
{
	for (int i = 0; i < fake.nclients; i++)
		fn(&fake.clients[i].c, ud);
}

void mmn__admin_foreach_sub(struct broker *b, uint64_t client_id, pid_t pid,
			    void (*fn)(const struct admin_sub *, void *), void *ud)
{
	for (int i = 0; i < fake.nsubs; i++)
		if ((!client_id || fake.subs[i].client_id == client_id) &&
		    (!pid || fake.subs[i].target_pid == pid))
			fn(&fake.subs[i], ud);
}

int mmn__admin_evict(struct broker *b, uint64_t client_id)
{
	for (int i = 0; i < fake.nclients; i++) {
		if (fake.clients[i].c.id != client_id)
			continue;
		printf("evict %llu\n", (unsigned long long)client_id);
		fflush(stdout);
		fake.stats.evictions++;
		return 0;
	}
	return -ENOENT;
}

int mmn__admin_reload(struct broker *b, char *msg, size_t msg_size)
{
	if (msg_size)
		msg[0] = 0;
	printf("reload\n");
	fflush(stdout);
	return 0;
}

void mmn__admin_set_observer(struct broker *b, const struct admin_observer *obs)
{
	fake.have_obs = obs != NULL;
	if (obs)
		fake.obs = *obs;
}

/* Commands. */

static void cmd_connect(const char *args)
{
	struct fake_client *fc = &fake.clients[fake.nclients];
	unsigned long long id;
	int pid, uid;

	if (fake.nclients == MAX_ITEMS || sscanf(args, "%llu %d %d %63s", &id, &pid, &uid, fc->name) != 4)
		return;
	fc->c = (struct admin_client){.id = id,
				      .pid = pid,
				      .uid = (uid_t)uid,
				      .name = fc->name,
				      .mode = "blocking",
				      .subscriptions = 1,
				      .pending_acks = 2,
				      .evictions = 3};
	fake.nclients++;
	if (fake.have_obs)
		fake.obs.client_connected(fake.obs.ud, &fc->c);
}

static void cmd_disconnect(const char *args)
{
	unsigned long long id = strtoull(args, NULL, 10);

	for (int i = 0; i < fake.nclients; i++) {
		if (fake.clients[i].c.id != id)
			continue;
		memmove(&fake.clients[i], &fake.clients[i + 1],
			sizeof(fake.clients[0]) * (size_t)(fake.nclients - i - 1));
		fake.nclients--;
		/* The name pointer moved with the struct. */
		for (int k = 0; k < fake.nclients; k++)
			fake.clients[k].c.name = fake.clients[k].name;
		if (fake.have_obs)
			fake.obs.client_disconnected(fake.obs.ud, id);
		return;
	}
}

static void cmd_sub(const char *args)
{
	struct admin_sub *s = &fake.subs[fake.nsubs];
	unsigned long long id, client, start, end, mask, seq;
	unsigned int flags, ksub;
	int pid;

	if (fake.nsubs == MAX_ITEMS || sscanf(args, "%llu %llu %d %llx %llx %u %llx %llu %u", &id, &client,
					      &pid, &start, &end, &flags, &mask, &seq, &ksub) != 9)
		return;
	*s = (struct admin_sub){id, client, pid, start, end, flags, mask, seq, ksub};
	fake.nsubs++;
}

static void cmd_inv(const char *args)
{
	int n = atoi(args);

	for (int i = 0; i < n && fake.have_obs; i++) {
		struct admin_invalidation inv = {.target_pid = 4242,
						 .start = 0x1000u * (unsigned)i,
						 .end = 0x1000u * (unsigned)i + 0x1000,
						 .event = 0,
						 .blockable = true,
						 .clients = 1,
						 .latency_us = 17};

		fake.stats.invalidations++;
		fake.obs.invalidation(fake.obs.ud, &inv);
	}
}

static void on_closed(uv_handle_t *h)
{
}

static void run_command(char *cmd)
{
	char *args = strchr(cmd, ' ');
	unsigned long long id;
	char reason[64];

	if (args)
		*args++ = '\0';
	else
		args = cmd + strlen(cmd);
	if (strcmp(cmd, "connect") == 0)
		cmd_connect(args);
	else if (strcmp(cmd, "disconnect") == 0)
		cmd_disconnect(args);
	else if (strcmp(cmd, "sub") == 0)
		cmd_sub(args);
	else if (strcmp(cmd, "inv") == 0)
		cmd_inv(args);
	else if (strcmp(cmd, "source") == 0) {
		snprintf(fake.source, sizeof(fake.source), "%s", args);
		if (fake.have_obs)
			fake.obs.source_changed(fake.obs.ud, fake.source);
	} else if (strcmp(cmd, "evicted") == 0) {
		if (sscanf(args, "%llu %63s", &id, reason) == 2 && fake.have_obs)
			fake.obs.client_evicted(fake.obs.ud, id, reason);
	} else if (strcmp(cmd, "quit") == 0) {
		uv_poll_stop(&input);
		uv_close((uv_handle_t *)&input, on_closed);
		mmn__bus_close(bus);
		bus = NULL;
	}
	printf("ok\n");
	fflush(stdout);
}

static void on_input(uv_poll_t *h, int status, int events)
{
	ssize_t n = read(STDIN_FILENO, line + line_len, sizeof(line) - 1 - line_len);
	char *nl;

	if (n <= 0) {
		run_command((char[]){"quit"});
		return;
	}
	line_len += (size_t)n;
	line[line_len] = '\0';
	while (bus && (nl = strchr(line, '\n'))) {
		*nl = '\0';
		run_command(line);
		line_len -= (size_t)(nl + 1 - line);
		memmove(line, nl + 1, line_len + 1);
	}
}

int main(int argc, char **argv)
{
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: fake-broker ADDRESS\n");
		return 2;
	}
	loop = uv_default_loop();
	r = mmn__bus_open(loop, NULL, BUS_ADDRESS, argv[1], &bus);
	if (r < 0) {
		fprintf(stderr, "fake-broker: mmn__bus_open: %s\n", strerror(-r));
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	uv_poll_init(loop, &input, STDIN_FILENO);
	uv_poll_start(&input, UV_READABLE, on_input);
	uv_run(loop, UV_RUN_DEFAULT);
	r = uv_loop_close(loop);
	return r == 0 ? 0 : 1;
}
