/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * daemon/admin.h for the D-Bus side: read-only views, defaults, eviction.
 * Every call runs on the loop thread and finishes before returning; the
 * structures handed to callbacks live only for the call.
 */

#include "admin/admin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "broker-internal.h"
#include "config.h"
#include "clients/client.h"
#include "clients/send.h"
#include "engine/seqpage-slots.h"
#include "engine/list.h"
#include "engine/sub.h"

void mmn__admin_stats(struct broker *b, struct admin_stats *out)
{
	*out = b->stats;
	out->kernel_subscriptions = b->nksubs;
}

void mmn__admin_get_defaults(struct broker *b, struct admin_defaults *out)
{
	out->ack_timeout_ms = b->opt.ack_timeout_ms;
	out->ack_cap_ms = b->opt.ack_cap_ms;
	out->max_clients = b->opt.max_clients;
	out->max_subs_per_client = b->opt.max_subs;
	out->max_queued_events = b->opt.max_queued;
	out->max_clients_per_uid = b->opt.max_clients_per_uid;
	out->max_subs_per_uid = b->opt.max_subs_per_uid;
	out->hello_timeout_ms = b->opt.hello_timeout_ms;
}

/* New values apply to new subscriptions and connections; existing ones keep theirs. */
int mmn__admin_set_defaults(struct broker *b, const struct admin_defaults *d)
{
	struct broker_options o = b->opt;

	o.ack_timeout_ms = d->ack_timeout_ms;
	o.ack_cap_ms = d->ack_cap_ms;
	o.max_clients = d->max_clients;
	o.max_subs = d->max_subs_per_client;
	o.max_queued = d->max_queued_events;
	o.max_clients_per_uid = d->max_clients_per_uid;
	o.max_subs_per_uid = d->max_subs_per_uid;
	o.hello_timeout_ms = d->hello_timeout_ms;
	if (mmn__broker_options_check(&o) < 0)
		return -EINVAL;
	b->opt = o;
	/* Deadlines run from each connection's accept time with the new timeout. */
	mmn__client_hello_rearm(b);
	return 0;
}

void mmn__admin_source(struct broker *b, const char **name, uint64_t *event_mask, bool *acks_hold_kernel)
{
	if (!b->src || b->source_lost) {
		*name = "none";
		*event_mask = 0;
		*acks_hold_kernel = false;
		return;
	}
	*name = b->src->caps.name;
	*event_mask = b->src->caps.event_mask;
	*acks_hold_kernel = b->src->caps.acks_hold_kernel;
}

static const char *client_mode(const struct client *c)
{
	bool blk = false, nb = false;

	list_for_each(pos, &c->subs)
	{
		const struct sub *s = list_entry(pos, struct sub, clink);

		if (s->flags == MMN__V1__SUB_FLAG__SUB_BLOCKING)
			blk = true;
		else
			nb = true;
	}
	if (blk && nb)
		return "mixed";
	if (blk)
		return "blocking";
	return nb ? "nonblocking" : "idle";
}

void mmn__admin_foreach_client(struct broker *b, void (*fn)(const struct admin_client *, void *), void *ud)
{
	list_for_each(pos, &b->clients)
	{
		struct client *c = list_entry(pos, struct client, link);
		struct admin_client ac = {
			.id = c->id,
			.pid = c->pid,
			.uid = c->uid,
			.name = c->name,
			.mode = client_mode(c),
			.subscriptions = c->nsubs,
			.pending_acks = c->pending_acks,
			.evictions = c->evictions,
			.ack_latency = &c->ack_latency,
		};

		if (c->hello)
			fn(&ac, ud);
	}
}

void mmn__admin_foreach_sub(struct broker *b, uint64_t client_id, pid_t pid,
			    void (*fn)(const struct admin_sub *, void *), void *ud)
{
	list_for_each(pos, &b->clients)
	{
		struct client *c = list_entry(pos, struct client, link);

		if (client_id && c->id != client_id)
			continue;
		list_for_each(sp, &c->subs)
		{
			struct sub *s = list_entry(sp, struct sub, clink);
			struct admin_sub as = {
				.id = s->id,
				.client_id = c->id,
				.target_pid = s->t->pid,
				.start = s->start,
				.end = s->end,
				.flags = s->flags,
				.event_mask = s->mask,
				.seq = mmn__seqpage_value(c, s->slot),
				.ksub_id = mmn__sub_ksub_id(s),
			};

			if (pid && s->t->pid != pid)
				continue;
			fn(&as, ud);
		}
	}
}

int mmn__admin_evict(struct broker *b, uint64_t client_id)
{
	list_for_each(pos, &b->clients)
	{
		struct client *c = list_entry(pos, struct client, link);

		if (c->id != client_id)
			continue;
		list_for_each(sp, &c->subs)
		{
			struct sub *s = list_entry(sp, struct sub, clink);

			mmn__client_send_revoked(c, s->id, MMN__V1__REVOKE_REASON__REVOKE_ADMIN, 0);
		}
		b->stats.evictions++;
		c->evictions++;
		mmn__log_fields(LOG_NOTICE, MMN_MSGID_CLIENT_EVICT, &CLIENT_FIELDS(c),
				"Client %" PRIu64 " (pid %d) evicted by an administrator", c->id,
				(int)c->pid);
		if (b->has_obs && b->obs.client_evicted)
			b->obs.client_evicted(b->obs.ud, c->id, "admin");
		mmn__client_drop(c, -ECONNABORTED);
		b->settle(b);
		return 0;
	}
	return -ENOENT;
}

void mmn__admin_set_config(struct broker *b, struct config *c)
{
	b->config = c;
}

/* Keys that differ from the running values but apply only at a restart: logged, left as they are. */
static void note_restart_keys(const struct config *c, const struct config_settings *s)
{
	char was[CONFIG_BUS_MAX], now[CONFIG_BUS_MAX];

	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		if (mmn__config_key_live((enum config_key)k) ||
		    mmn__config_same(&c->running, s, (enum config_key)k))
			continue;
		mmn__config_format(&c->running, (enum config_key)k, was, sizeof(was));
		mmn__config_format(s, (enum config_key)k, now, sizeof(now));
		mmn__log(LOG_NOTICE, NULL,
			 "%s: %s changed to %s; it takes effect when mmnd restarts (still %s)", c->path,
			 mmn__config_key_name((enum config_key)k), now, was);
	}
}

/*
 * Everything is validated by mmn__config_load() before anything changes;
 * mmn__admin_set_defaults() checks the same ranges, so it cannot refuse
 * what was loaded (it is still checked, and then nothing has changed).
 */
int mmn__admin_reload(struct broker *b, char *msg, size_t msg_size)
{
	struct config *c = b->config;
	struct config_settings s;
	struct admin_defaults d;
	int r;

	if (msg_size)
		msg[0] = 0;
	if (!c)
		return 0;
	r = mmn__config_load(c, &s, msg, msg_size);
	if (r < 0) {
		mmn__log(LOG_ERR, NULL, "Reload refused, the settings in force are unchanged: %s", msg);
		return r;
	}
	d = (struct admin_defaults){
		.ack_timeout_ms = s.o.ack_timeout_ms,
		.ack_cap_ms = s.o.ack_cap_ms,
		.max_clients = s.o.max_clients,
		.max_subs_per_client = s.o.max_subs,
		.max_queued_events = s.o.max_queued,
		.max_clients_per_uid = s.o.max_clients_per_uid,
		.max_subs_per_uid = s.o.max_subs_per_uid,
		.hello_timeout_ms = s.o.hello_timeout_ms,
	};
	r = mmn__admin_set_defaults(b, &d);
	if (r < 0) {
		snprintf(msg, msg_size, "%s: the broker refused the new limits: %s", c->path, strerror(-r));
		mmn__log(LOG_ERR, NULL, "Reload refused, the settings in force are unchanged: %s", msg);
		return r;
	}
	mmn__log_set_level(s.log_level);
	note_restart_keys(c, &s);
	c->running.o = s.o;
	c->running.log_level = s.log_level;
	mmn__log(LOG_INFO, NULL, "Reloaded %s", c->path);
	return 0;
}

void mmn__admin_set_observer(struct broker *b, const struct admin_observer *obs)
{
	if (obs) {
		b->obs = *obs;
		b->has_obs = true;
	} else {
		b->has_obs = false;
	}
}
