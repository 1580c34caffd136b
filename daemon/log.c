/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
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

unsigned mmn__log_fields_format(const struct log_fields *f, char out[LOG_FIELDS_MAX][LOG_FIELD_LEN])
{
	unsigned n = 0;

	if (!f)
		return 0;
	if (f->has & LOG_F_CLIENT) {
		snprintf(out[n++], LOG_FIELD_LEN, "CLIENT_PID=%d", f->client_pid);
		snprintf(out[n++], LOG_FIELD_LEN, "CLIENT_UID=%u", f->client_uid);
	}
	if (f->has & LOG_F_SUB)
		snprintf(out[n++], LOG_FIELD_LEN, "SUB_ID=%" PRIu64, f->sub_id);
	if (f->has & LOG_F_TARGET)
		snprintf(out[n++], LOG_FIELD_LEN, "TARGET_PID=%d", f->target_pid);
	if (f->has & LOG_F_EVENT)
		snprintf(out[n++], LOG_FIELD_LEN, "EVENT=%" PRIu64, f->event);
	return n;
}

#ifdef HAVE_SYSTEMD
/* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID and @f's fields, in one sd_journal_sendv. */
static void journal_send(int level, const char *msgid, const struct log_fields *f, const char *msg)
{
	char fields[LOG_FIELDS_MAX][LOG_FIELD_LEN], prio[16], id[64], text[1100];
	struct iovec iov[4 + LOG_FIELDS_MAX];
	unsigned n = 0, nf;

	snprintf(text, sizeof(text), "MESSAGE=%s", msg);
	snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
	iov[n++] = (struct iovec){text, strlen(text)};
	iov[n++] = (struct iovec){prio, strlen(prio)};
	iov[n++] = (struct iovec){(char *)"SYSLOG_IDENTIFIER=mmnd", strlen("SYSLOG_IDENTIFIER=mmnd")};
	if (msgid) {
		snprintf(id, sizeof(id), "MESSAGE_ID=%s", msgid);
		iov[n++] = (struct iovec){id, strlen(id)};
	}
	nf = mmn__log_fields_format(f, fields);
	for (unsigned i = 0; i < nf; i++)
		iov[n++] = (struct iovec){fields[i], strlen(fields[i])};
	sd_journal_sendv(iov, (int)n);
}
#endif

__attribute__((format(printf, 4, 0))) static void
vlog(int level, const char *msgid, const struct log_fields *f, const char *fmt, va_list ap)
{
	char buf[1024];
	int saved = errno;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (to_journal < 0)
		to_journal = stderr_is_journal();
#ifdef HAVE_SYSTEMD
	if (to_journal) {
		journal_send(level, msgid, f, buf);
		errno = saved;
		return;
	}
#endif
	fprintf(stderr, "<%d>%s\n", level, buf);
	errno = saved;
}

void mmn__log(int level, const char *msgid, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vlog(level, msgid, NULL, fmt, ap);
	va_end(ap);
}

void mmn__log_fields(int level, const char *msgid, const struct log_fields *f, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vlog(level, msgid, f, fmt, ap);
	va_end(ap);
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
