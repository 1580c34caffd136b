/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd's settings: the option table, validation, the mmnd.conf parser and
 * the merge defaults < file < command line (config.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "options.h"

enum kind { K_SOURCE, K_SOCKET, K_BUS, K_LEVEL, K_U32 };

/*
 * The one table: every key, how it is checked and whether a reload applies
 * it.  A K_U32 key is a bounded broker option of the same name; its field
 * and range are broker.h's MMN_BROKER_BOUNDED_OPTIONS.
 */
static const struct key {
	const char *name;
	enum kind kind;
	bool live;
} keys[CONFIG_N_KEYS] = {
	[CONFIG_SOURCE] = {"source", K_SOURCE, false},
	[CONFIG_SOCKET] = {"socket", K_SOCKET, false},
	[CONFIG_BUS] = {"bus", K_BUS, false},
	[CONFIG_LOG_LEVEL] = {"log-level", K_LEVEL, true},
	[CONFIG_ACK_TIMEOUT_MS] = {"ack-timeout-ms", K_U32, true},
	[CONFIG_ACK_CAP_MS] = {"ack-cap-ms", K_U32, true},
	[CONFIG_MAX_CLIENTS] = {"max-clients", K_U32, true},
	[CONFIG_MAX_SUBS] = {"max-subs", K_U32, true},
	[CONFIG_MAX_QUEUED] = {"max-queued", K_U32, true},
	[CONFIG_MAX_CLIENTS_PER_UID] = {"max-clients-per-uid", K_U32, true},
	[CONFIG_MAX_SUBS_PER_UID] = {"max-subs-per-uid", K_U32, true},
	[CONFIG_HELLO_TIMEOUT_MS] = {"hello-timeout-ms", K_U32, true},
};

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg",	   [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit", [LOG_ERR] = "err",
	[LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

const char *mmn__config_key_name(enum config_key k)
{
	return keys[k].name;
}

bool mmn__config_key_live(enum config_key k)
{
	return keys[k].live;
}

int mmn__config_key_find(const char *name)
{
	for (int k = 0; k < CONFIG_N_KEYS; k++)
		if (strcmp(keys[k].name, name) == 0)
			return k;
	return -ENOENT;
}

void mmn__config_settings_init(struct config_settings *s)
{
	*s = (struct config_settings){.log_level = LOG_INFO}; /* log.c's own default */
	strcpy(s->source, "auto");
	mmn__broker_options_default(&s->o);
}

/* A K_U32 key's field and range; every one is in the broker's list (test-config checks). */
static const struct broker_option_bound *bound_of(const struct key *k)
{
	return mmn__broker_option_bound(k->name);
}

static uint32_t *u32_field(struct config_settings *s, const struct key *k)
{
	return (uint32_t *)((char *)&s->o + bound_of(k)->off);
}

static const uint32_t *u32_cfield(const struct config_settings *s, const struct key *k)
{
	return (const uint32_t *)((const char *)&s->o + bound_of(k)->off);
}

static int refuse(int err, char *why, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int refuse(int err, char *why, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
	return err;
}

static bool bus_ok(const char *v)
{
	return strcmp(v, "none") == 0 || strcmp(v, "system") == 0 || strcmp(v, "session") == 0 ||
	       strchr(v, ':') != NULL;
}

int mmn__config_set(struct config_settings *s, enum config_key key, const char *value, char *why,
		    size_t why_size)
{
	const struct key *k = &keys[key];
	size_t n = strlen(value);
	int r;

	switch (k->kind) {
	case K_SOURCE:
		if (strcmp(value, "auto") && strcmp(value, "kmod") && strcmp(value, "uffd") &&
		    strcmp(value, "test"))
			return refuse(-EINVAL, why, why_size, "must be auto, kmod, uffd or test, not '%.64s'",
				      value);
		memcpy(s->source, value, n + 1);
		break;
	case K_SOCKET:
		if (n == 0 || n >= sizeof(s->socket))
			return refuse(-EINVAL, why, why_size,
				      "must be a path of 1 to %zu bytes, not %zu bytes",
				      sizeof(s->socket) - 1, n);
		memcpy(s->socket, value, n + 1);
		break;
	case K_BUS:
		if (n >= sizeof(s->bus) || !bus_ok(value))
			return refuse(-EINVAL, why, why_size,
				      "must be none, system, session or a D-Bus address (at most %zu bytes), "
				      "not '%.64s'",
				      sizeof(s->bus) - 1, value);
		memcpy(s->bus, value, n + 1);
		break;
	case K_LEVEL:
		r = mmn__log_parse_level(value);
		if (r < 0)
			return refuse(-EINVAL, why, why_size,
				      "must be err, warning, info or debug, not '%.64s'", value);
		s->log_level = r;
		break;
	case K_U32:
		r = mmn__option_parse_u32(value, 1, bound_of(k)->max, u32_field(s, k));
		if (r < 0)
			return refuse(r, why, why_size,
				      "is out of range or not a number: it must be an integer between 1 and "
				      "%" PRIu32 ", not '%.64s'",
				      bound_of(k)->max, value);
		break;
	}
	s->given |= 1u << key;
	return 0;
}

/* @dst's @key becomes @src's. */
static void copy_key(struct config_settings *dst, const struct config_settings *src, enum config_key key)
{
	const struct key *k = &keys[key];

	switch (k->kind) {
	case K_SOURCE:
		memcpy(dst->source, src->source, sizeof(dst->source));
		break;
	case K_SOCKET:
		memcpy(dst->socket, src->socket, sizeof(dst->socket));
		break;
	case K_BUS:
		memcpy(dst->bus, src->bus, sizeof(dst->bus));
		break;
	case K_LEVEL:
		dst->log_level = src->log_level;
		break;
	case K_U32:
		*u32_field(dst, k) = *u32_cfield(src, k);
		break;
	}
	dst->given |= src->given & (1u << key);
}

bool mmn__config_same(const struct config_settings *a, const struct config_settings *b, enum config_key key)
{
	const struct key *k = &keys[key];

	switch (k->kind) {
	case K_SOURCE:
		return strcmp(a->source, b->source) == 0;
	case K_SOCKET:
		return strcmp(a->socket, b->socket) == 0;
	case K_BUS:
		return strcmp(a->bus, b->bus) == 0;
	case K_LEVEL:
		return a->log_level == b->log_level;
	case K_U32:
		return *u32_cfield(a, k) == *u32_cfield(b, k);
	}
	return false;
}

void mmn__config_format(const struct config_settings *s, enum config_key key, char *buf, size_t size)
{
	const struct key *k = &keys[key];
	const char *str = NULL;

	switch (k->kind) {
	case K_SOURCE:
		str = s->source;
		break;
	case K_SOCKET:
		str = s->socket;
		break;
	case K_BUS:
		str = s->bus;
		break;
	case K_LEVEL:
		str = s->log_level >= LOG_EMERG && s->log_level <= LOG_DEBUG ? level_names[s->log_level]
									     : "?";
		break;
	case K_U32:
		snprintf(buf, size, "%" PRIu32, *u32_cfield(s, k));
		return;
	}
	snprintf(buf, size, "%s", str[0] ? str : "(default)");
}

/* Index of the first byte of @s[0..n) that is not valid UTF-8, or @n. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i], lo = 0x80, hi = 0xbf;
		size_t more;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			more = 1;
		else if (c >= 0xe0 && c <= 0xef)
			more = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		else if (c >= 0xf0 && c <= 0xf4)
			more = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		else
			return i;
		if (n - i <= more || s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t j = 2; j <= more; j++)
			if (s[i + j] < 0x80 || s[i + j] > 0xbf)
				return i;
		i += more + 1;
	}
	return n;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = 0;
	return s;
}

/* The parser's state: where it is, what it has seen. */
struct parse {
	const char *name;
	unsigned int line;
	unsigned int first[CONFIG_N_KEYS]; /* the line a key was set on, 0: not yet */
	char *why;
	size_t why_size;
};

/* A byte that is not text: a control byte (tab excepted) or invalid UTF-8. 0 when none. */
static int check_bytes(struct parse *p, const char *line, size_t n)
{
	size_t bad = utf8_valid_prefix((const unsigned char *)line, n);
	const char *eq;
	char key[CONFIG_LINE_MAX];

	for (size_t i = 0; i < bad; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			bad = i;
			break;
		}
	}
	if (bad == n)
		return 0;
	/* Name the key when the bad byte is in the value. */
	eq = memchr(line, '=', bad);
	key[0] = 0;
	if (eq) {
		memcpy(key, line, (size_t)(eq - line));
		key[eq - line] = 0;
	}
	return refuse(-EINVAL, p->why, p->why_size, "%s:%u: %s%s%s byte 0x%02x in column %zu", p->name,
		      p->line, trim(key), eq ? ": " : "",
		      (unsigned char)line[bad] < 0x80 ? "control" : "invalid UTF-8", (unsigned char)line[bad],
		      bad + 1);
}

/* One line (@n bytes, without its newline) onto @s. */
static int parse_line(struct parse *p, const char *text, size_t n, struct config_settings *s)
{
	char buf[CONFIG_LINE_MAX], *line, *eq, *key, *value, w[256];
	int k, r;

	if (n >= CONFIG_LINE_MAX)
		return refuse(-EINVAL, p->why, p->why_size, "%s:%u: line longer than %d bytes", p->name,
			      p->line, CONFIG_LINE_MAX - 1);
	r = check_bytes(p, text, n);
	if (r < 0)
		return r;
	memcpy(buf, text, n);
	buf[n] = 0;
	line = trim(buf);
	if (!*line || *line == '#')
		return 0;
	eq = strchr(line, '=');
	if (!eq)
		return refuse(-EINVAL, p->why, p->why_size, "%s:%u: expected KEY=VALUE, not '%.64s'", p->name,
			      p->line, line);
	*eq = 0;
	key = trim(line);
	value = trim(eq + 1);
	k = mmn__config_key_find(key);
	if (k < 0)
		return refuse(-EINVAL, p->why, p->why_size, "%s:%u: unknown key '%.64s'", p->name, p->line,
			      key);
	if (p->first[k])
		return refuse(-EINVAL, p->why, p->why_size, "%s:%u: %s: duplicate key (first set on line %u)",
			      p->name, p->line, key, p->first[k]);
	p->first[k] = p->line;
	r = mmn__config_set(s, (enum config_key)k, value, w, sizeof(w));
	if (r < 0)
		return refuse(r, p->why, p->why_size, "%s:%u: %s %s", p->name, p->line, key, w);
	return 0;
}

int mmn__config_parse(const char *name, const char *buf, size_t len, struct config_settings *s, char *why,
		      size_t why_size)
{
	struct parse p = {.name = name, .why = why, .why_size = why_size};
	size_t pos = 0;
	int r;

	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;

		p.line++;
		r = parse_line(&p, buf + pos, n, s);
		if (r < 0)
			return r;
		pos += n + (nl != NULL);
	}
	return 0;
}

/* Read @path whole into a new buffer; 0, or -errno with @why. */
static int read_file(const char *path, char **out, size_t *len, char *why, size_t why_size)
{
	char *buf = malloc(CONFIG_FILE_MAX + 1);
	size_t n = 0;
	int fd, r = 0;

	if (!buf)
		return refuse(-ENOMEM, why, why_size, "%s: %s", path, strerror(ENOMEM));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		r = -errno;
	while (r == 0 && n <= CONFIG_FILE_MAX) {
		ssize_t k = read(fd, buf + n, CONFIG_FILE_MAX + 1 - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			r = -errno;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	if (fd >= 0)
		close(fd);
	if (r == 0 && n > CONFIG_FILE_MAX)
		r = refuse(-EFBIG, why, why_size, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
	else if (r < 0)
		refuse(r, why, why_size, "%s: %s", path, strerror(-r));
	if (r < 0) {
		free(buf);
		return r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The cross-key rules, once everything is in: a lower cap alone lowers the default deadline. */
static int finish(struct config_settings *s, const char *path, uint32_t from_file, char *why, size_t why_size)
{
	const uint32_t both = (1u << CONFIG_ACK_TIMEOUT_MS) | (1u << CONFIG_ACK_CAP_MS);

	if (!(s->given & (1u << CONFIG_ACK_TIMEOUT_MS)) && s->o.ack_timeout_ms > s->o.ack_cap_ms)
		s->o.ack_timeout_ms = s->o.ack_cap_ms;
	if (s->o.ack_timeout_ms > s->o.ack_cap_ms)
		return refuse(-EINVAL, why, why_size,
			      "%s: ack-timeout-ms (%" PRIu32 ") must not exceed ack-cap-ms (%" PRIu32 ")",
			      from_file & both ? path : "command line", s->o.ack_timeout_ms, s->o.ack_cap_ms);
	return 0;
}

int mmn__config_load(const struct config *c, struct config_settings *out, char *why, size_t why_size)
{
	struct config_settings s;
	uint32_t from_file;
	char *buf = NULL;
	size_t len = 0;
	int r;

	mmn__config_settings_init(&s);
	if (c->path) {
		r = read_file(c->path, &buf, &len, why, why_size);
		if (r == -ENOENT && !c->explicit_path)
			r = 0;
		else if (r == 0)
			r = mmn__config_parse(c->path, buf, len, &s, why, why_size);
		free(buf);
		if (r < 0)
			return r;
	}
	from_file = s.given;
	for (int k = 0; k < CONFIG_N_KEYS; k++)
		if (c->cmdline.given & (1u << k))
			copy_key(&s, &c->cmdline, (enum config_key)k);
	r = finish(&s, c->path, from_file & ~c->cmdline.given, why, why_size);
	if (r < 0)
		return r;
	*out = s;
	return 0;
}
