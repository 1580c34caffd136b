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

/* MESSAGE_IDs (journalctl MESSAGE_ID=...). */
#define MMN_MSGID_CLIENT_ATTACH	 "6c3b1f0a9d2e4b7c8a51e2f3d4c5b6a7"
#define MMN_MSGID_CLIENT_DETACH	 "0e9d8c7b6a594837a2b1c0d9e8f7a6b5"
#define MMN_MSGID_CLIENT_EVICT	 "f1e2d3c4b5a697887968574a3b2c1d0e"
#define MMN_MSGID_SOURCE_MISSING "a4b3c2d1e0f94837b6a5c4d3e2f1a0b9"
#define MMN_MSGID_STARTED	 "3d2c1b0a99887766554433221100ffee"

void mmn__log_set_level(int level);
int mmn__log_get_level(void);
/* Parse "err", "warning", "info", "debug" (or a number); -EINVAL. */
int mmn__log_parse_level(const char *s);

/* @msgid may be NULL.  Extra journal fields: none; the message says it all. */
void mmn__log(int level, const char *msgid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

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
