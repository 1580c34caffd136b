/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd's log: structured journald entries (sd_journal_send) when stderr is
 * connected to the journal ($JOURNAL_STREAM), else "<N>message" lines on
 * stderr that journald and systemd understand.  Levels are syslog's.
 * Anything a client can trigger goes through a rate limit.
 */
#ifndef MMN_DAEMON_LOG_H
#define MMN_DAEMON_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

/*
 * MESSAGE_IDs (journalctl MESSAGE_ID=...), each generated once with
 * `systemd-id128 new` and never changed: systemd/mmn.catalog explains each.
 */
#define MMN_MSGID_CLIENT_ATTACH	 "9271425d4d0f4a4787984687300678ae"
#define MMN_MSGID_CLIENT_DETACH	 "a80b2cb50139416db628bdd0b0557cff"
#define MMN_MSGID_CLIENT_EVICT	 "0761e86de85547d48e419eacc652458b" /* deadline or administrator */
#define MMN_MSGID_PROTOCOL_ERROR "a2a1982028c64569b3020fda3c71cef4" /* client dropped for a bad message */
#define MMN_MSGID_QUEUE_OVERFLOW "84ab2e1a2d424801aaef974c2d714667" /* events coalesced */
#define MMN_MSGID_SOURCE_MISSING "a2d9bfc1e16a4bf7896e5c4d532f1b74" /* no source at start */
#define MMN_MSGID_SOURCE_LOST	 "89e91bd1d44b4699bdbde45dca71c801" /* the source failed */
#define MMN_MSGID_SOURCE_RESYNC	 "87cbe6a1729648778344cce5faef1c14" /* subscriptions resynchronised */
#define MMN_MSGID_STARTED	 "a54be5a1763c488cbb8af32894ba0e18"
#define MMN_MSGID_STOPPING	 "283e0481ddd04a728bdf042671a64bdd"

void mmn__log_set_level(int level);
int mmn__log_get_level(void);
/* Parse "err", "warning", "info", "debug" (or a number); -EINVAL. */
int mmn__log_parse_level(const char *s);

/* @msgid may be NULL.  Extra journal fields: none; the message says it all. */
void mmn__log(int level, const char *msgid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Structured journal fields of one entry, each sent only when its LOG_F_*
 * bit is in @has: CLIENT_PID and CLIENT_UID (LOG_F_CLIENT), SUB_ID
 * (LOG_F_SUB), TARGET_PID (LOG_F_TARGET), EVENT (LOG_F_EVENT: mmnd's event
 * id, as in the message).  On stderr only the message is printed.
 */
enum { LOG_F_CLIENT = 1, LOG_F_SUB = 2, LOG_F_TARGET = 4, LOG_F_EVENT = 8 };
struct log_fields {
	unsigned has;
	int client_pid;
	unsigned client_uid;
	uint64_t sub_id;
	int target_pid;
	uint64_t event;
};
#define LOG_FIELDS_MAX 5
#define LOG_FIELD_LEN  40 /* "CLIENT_UID=" and a 64-bit number fit */
/* Write @f's fields as "NAME=value" strings into @out; returns how many. */
unsigned mmn__log_fields_format(const struct log_fields *f, char out[LOG_FIELDS_MAX][LOG_FIELD_LEN]);
/* mmn__log() with the journal fields @f (NULL: none). */
void mmn__log_fields(int level, const char *msgid, const struct log_fields *f, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A token bucket: at most @burst messages per @interval_ms. */
struct ratelimit {
	uint64_t interval_ms;
	unsigned burst;
	uint64_t begin_ms;
	unsigned count;
	unsigned suppressed;
};
#define RATELIMIT_INIT(i, b)                                                                                 \
	{                                                                                                    \
		(i), (b), 0, 0, 0                                                                            \
	}
/* true: log it.  Reports how many were suppressed once a window opens. */
bool mmn__ratelimit_ok(struct ratelimit *rl, uint64_t now_ms);

#endif
