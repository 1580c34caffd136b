/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

static int max_level = LOG_INFO;
/* -1: not decided yet; 0: stderr; 1: journal.  Decided on first use. */
static int to_journal = -1;

void mmn__log_set_level(int level)
{
	max_level = level;
}

int mmn__log_get_level(void)
{
	return max_level;
}

int mmn__log_parse_level(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{"emerg", LOG_EMERG}, {"alert", LOG_ALERT},	{"crit", LOG_CRIT},    {"err", LOG_ERR},
		{"error", LOG_ERR},   {"warning", LOG_WARNING}, {"warn", LOG_WARNING}, {"notice", LOG_NOTICE},
		{"info", LOG_INFO},   {"debug", LOG_DEBUG},
	};
	char *end;
	long v;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].level;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > 7)
		return -EINVAL;
	return (int)v;
}

/* $JOURNAL_STREAM is "dev:ino" of the journal stream stderr was connected to. */
static int stderr_is_journal(void)
{
#ifdef HAVE_SYSTEMD
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
#else
	return 0;
#endif
}

void mmn__log(int level, const char *msgid, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int saved = errno;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (to_journal < 0)
		to_journal = stderr_is_journal();
#ifdef HAVE_SYSTEMD
	if (to_journal) {
		if (msgid)
			sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level, "MESSAGE_ID=%s", msgid,
					"SYSLOG_IDENTIFIER=mmnd", NULL);
		else
			sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level, "SYSLOG_IDENTIFIER=mmnd",
					NULL);
		errno = saved;
		return;
	}
#endif
	fprintf(stderr, "<%d>%s\n", level, buf);
	errno = saved;
}

bool mmn__ratelimit_ok(struct ratelimit *rl, uint64_t now_ms)
{
	if (rl->begin_ms == 0 || now_ms - rl->begin_ms >= rl->interval_ms) {
		if (rl->suppressed)
			mmn__log(LOG_WARNING, NULL, "%u messages suppressed", rl->suppressed);
		rl->begin_ms = now_ms ? now_ms : 1;
		rl->count = 0;
		rl->suppressed = 0;
	}
	if (rl->count < rl->burst) {
		rl->count++;
		return true;
	}
	rl->suppressed++;
	return false;
}
