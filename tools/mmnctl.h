/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnctl's pieces: mmnctl.c (options, verbs table, bus connection, errors,
 * pager), status.c (status), stats.c (stats, with hist.c and
 * openmetrics.c), list.c (clients, subscriptions), change.c (evict,
 * set-default, reload), monitor.c.
 */
#ifndef MMN_TOOLS_MMNCTL_H
#define MMN_TOOLS_MMNCTL_H

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "json.h"

#define BUS_NAME  "org.mmn.Broker1"
#define BUS_PATH  "/org/mmn/Broker1"
#define BUS_IFACE "org.mmn.Broker1.Manager"

#define EXIT_USAGE 2

enum json_mode { JSON_OFF, JSON_SHORT, JSON_PRETTY };
enum stats_format { FORMAT_TEXT, FORMAT_OPENMETRICS };

extern enum json_mode arg_json;
extern enum stats_format arg_format; /* stats --format */
extern bool arg_legend;
extern uint64_t arg_client; /* subscriptions --client */
extern uint32_t arg_pid;    /* subscriptions --pid */

/* mmn.v1.EventType names, by value. */
extern const char *const event_names[];
extern const size_t n_event_names;

/* Print a usage error; returns -EXIT_USAGE. */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print why a bus call failed, for an administrator; returns -1. */
int ctl_bus_failure(const sd_bus_error *e, int r, const char *what);
/* Call a manager method; -1 (after printing why) on failure. */
int ctl_call(sd_bus *bus, const char *method, sd_bus_message **reply, const char *what, const char *types,
	     ...);
void ctl_pager_open(void);
void ctl_json_begin(struct json *j);
int ctl_parse_u64(const char *s, uint64_t *out);

int verb_status(sd_bus *bus, int argc, char **argv);
int verb_stats(sd_bus *bus, int argc, char **argv);
int verb_clients(sd_bus *bus, int argc, char **argv);
int verb_subscriptions(sd_bus *bus, int argc, char **argv);
int verb_evict(sd_bus *bus, int argc, char **argv);
int verb_set_default(sd_bus *bus, int argc, char **argv);
int verb_reload(sd_bus *bus, int argc, char **argv);
int verb_monitor(sd_bus *bus, int argc, char **argv);

#endif
