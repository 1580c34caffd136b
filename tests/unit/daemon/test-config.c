/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * daemon/config.c: the mmnd.conf parser refuses every kind of bad line
 * with NAME:LINE and the key, never crashing; the merge is built-in
 * defaults < file < command line; a refused load changes nothing; the
 * installed example names every key with its default.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

static char dir[] = "/tmp/mmn-config-XXXXXX";

/* Parse @text (@len bytes) onto defaults; the return value, the message in @why. */
static int parse_n(const char *text, size_t len, struct config_settings *s, char *why, size_t size)
{
	mmn__config_settings_init(s);
	why[0] = 0;
	return mmn__config_parse("t.conf", text, len, s, why, size);
}

static int parse(const char *text, struct config_settings *s, char *why, size_t size)
{
	return parse_n(text, strlen(text), s, why, size);
}

static void test_good(void)
{
	struct config_settings s, d;
	char why[512];
	int r;

	r = parse("# comment\n\n   \t\n  # indented comment, caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n"
		  "max-clients=7\n"
		  "  ack-cap-ms \t=\t 900  \n"
		  "source = test\n"
		  "socket= /tmp/x y.sock\n"
		  "bus=unix:path=/run/b\n"
		  "log-level = debug\n"
		  "hello-timeout-ms=600000",
		  &s, why, sizeof(why));
	tap_ok(r == 0, "a good file parses (%s)", why);
	tap_is_int(s.o.max_clients, 7, "max-clients=7");
	tap_is_int(s.o.ack_cap_ms, 900, "blanks and tabs around KEY, '=' and VALUE are ignored");
	tap_is_str(s.source, "test", "source=test");
	tap_is_str(s.socket, "/tmp/x y.sock", "a path keeps its inner blank");
	tap_is_str(s.bus, "unix:path=/run/b", "a bus address keeps its '='");
	tap_is_int(s.log_level, LOG_DEBUG, "log-level=debug");
	tap_is_int(s.o.hello_timeout_ms, 600000, "the last line needs no newline");
	mmn__config_settings_init(&d);
	tap_is_int(s.o.max_queued, d.o.max_queued, "a key not in the file keeps its default");
	tap_ok(s.given == ((1u << CONFIG_MAX_CLIENTS) | (1u << CONFIG_ACK_CAP_MS) | (1u << CONFIG_SOURCE) |
			   (1u << CONFIG_SOCKET) | (1u << CONFIG_BUS) | (1u << CONFIG_LOG_LEVEL) |
			   (1u << CONFIG_HELLO_TIMEOUT_MS)),
	       "given marks exactly the keys in the file");
	tap_ok(parse("", &s, why, sizeof(why)) == 0 && s.given == 0, "an empty file is fine");
}

/* @text is refused with -EINVAL (-ERANGE for a number out of range) and a message holding each of @w1, @w2.
 */
static void refused(const char *what, const char *text, size_t len, const char *w1, const char *w2)
{
	struct config_settings s;
	char why[512];
	int r = parse_n(text, len, &s, why, sizeof(why));

	tap_ok((r == -EINVAL || r == -ERANGE) && strstr(why, w1) && (!w2 || strstr(why, w2)),
	       "%s: refused, \"%s\"", what, why);
}

#define REFUSED(what, text, w1, w2) refused(what, text, sizeof(text) - 1, w1, w2)

static void test_errors(void)
{
	char longline[2 * CONFIG_LINE_MAX + 8];

	REFUSED("unknown key", "max-clients=2\nmax-client=3\n", "t.conf:2:", "unknown key 'max-client'");
	REFUSED("option that is not a key", "ready-fd=3\n", "t.conf:1:", "'ready-fd'");
	REFUSED("duplicate key", "max-subs=2\n#\nmax-subs = 2\n", "t.conf:3: max-subs",
		"first set on line 1");
	REFUSED("not a number", "\nmax-queued=1k\n", "t.conf:2: max-queued", "between 1 and 1048576");
	REFUSED("zero", "max-clients=0\n", "t.conf:1: max-clients", "between 1 and 65536");
	REFUSED("above the maximum", "ack-cap-ms=600001\n", "t.conf:1: ack-cap-ms", "between 1 and 600000");
	REFUSED("huge", "max-subs=99999999999999999999999\n", "t.conf:1: max-subs", "between");
	REFUSED("negative", "max-subs=-1\n", "t.conf:1: max-subs", "'-1'");
	REFUSED("empty value", "max-subs=\n", "t.conf:1: max-subs", "between");
	REFUSED("empty socket", "socket=\n", "t.conf:1: socket", "1 to 107 bytes");
	REFUSED("bad source", "source=kernel\n", "t.conf:1: source", "auto, kmod, uffd or test");
	REFUSED("bad bus", "bus=user\n", "t.conf:1: bus", "not 'user'");
	REFUSED("bad log level", "log-level=loud\n", "t.conf:1: log-level", "not 'loud'");
	REFUSED("no '='", "max-subs 5\n", "t.conf:1:", "expected KEY=VALUE");
	REFUSED("a section header", "[mmnd]\n", "t.conf:1:", "expected KEY=VALUE");
	REFUSED("a trailing comment", "max-subs=5 # five\n", "t.conf:1: max-subs", "'5 # five'");
	REFUSED("NUL byte", "max-subs=5\0\n", "t.conf:1: max-subs:", "control byte 0x00");
	REFUSED("carriage return", "max-subs=5\r\n", "t.conf:1: max-subs:", "control byte 0x0d");
	REFUSED("escape in a comment", "\n# \x1b[31m\n", "t.conf:2:", "control byte 0x1b");
	REFUSED("DEL", "max-subs=\x7f\n", "t.conf:1: max-subs:", "0x7f");
	REFUSED("Latin-1 byte", "# caf\xe9\n", "t.conf:1:", "invalid UTF-8 byte 0xe9 in column 6");
	REFUSED("overlong UTF-8", "socket=/\xc0\xaf\n", "t.conf:1: socket:", "invalid UTF-8 byte 0xc0");
	REFUSED("UTF-16 surrogate", "# \xed\xa0\x80\n", "t.conf:1:", "invalid UTF-8 byte 0xed");
	REFUSED("above U+10FFFF", "# \xf4\x90\x80\x80\n", "t.conf:1:", "invalid UTF-8 byte 0xf4");
	REFUSED("truncated sequence", "# \xe2\x82", "t.conf:1:", "invalid UTF-8 byte 0xe2");
	REFUSED("lone continuation byte", "# \x80\n", "t.conf:1:", "invalid UTF-8");

	memset(longline, '#', sizeof(longline));
	longline[CONFIG_LINE_MAX - 1] = '\n';
	refused("a line of CONFIG_LINE_MAX - 1 bytes is fine, the next one is too long", longline,
		2 * CONFIG_LINE_MAX + 1, "t.conf:2:", "line longer than 1023 bytes");
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	tap_require(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

/* A config of file @path and command line @args (NULL-terminated KEY, VALUE pairs). */
static void config_init(struct config *c, const char *path, bool explicit_path, const char *const *args)
{
	char why[256];

	*c = (struct config){.path = path, .explicit_path = explicit_path};
	mmn__config_settings_init(&c->cmdline);
	for (; args && args[0]; args += 2)
		tap_require(mmn__config_set(&c->cmdline, mmn__config_key_find(args[0]), args[1], why,
					    sizeof(why)) == 0);
}

static void test_load(void)
{
	static const char *const cmd[] = {"max-clients", "9", "log-level", "err", NULL};
	struct config_settings out, d;
	struct config c;
	char path[96], missing[96], why[512];
	int r;

	snprintf(path, sizeof(path), "%s/mmnd.conf", dir);
	snprintf(missing, sizeof(missing), "%s/none.conf", dir);
	mmn__config_settings_init(&d);

	write_file(path, "max-clients=3\nmax-subs=4\nlog-level=debug\n");
	config_init(&c, path, true, cmd);
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == 0, "load: file and command line (%s)", r ? why : "ok");
	tap_is_int(out.o.max_clients, 9, "load: the command line wins over the file");
	tap_is_int(out.log_level, LOG_ERR, "load: ... for log-level too");
	tap_is_int(out.o.max_subs, 4, "load: the file wins over the default");
	tap_is_int(out.o.max_queued, d.o.max_queued, "load: the default where neither sets it");

	config_init(&c, missing, false, cmd);
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == 0 && out.o.max_clients == 9 && out.o.max_subs == d.o.max_subs,
	       "load: a missing default file is fine");
	config_init(&c, missing, true, NULL);
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == -ENOENT && strstr(why, missing) && strstr(why, "No such file"),
	       "load: a missing explicit file is an error (%s)", why);

	write_file(path, "ack-cap-ms=400\n");
	config_init(&c, path, true, NULL);
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == 0 && out.o.ack_timeout_ms == 400, "load: a lower cap alone lowers the default deadline");
	write_file(path, "ack-timeout-ms=2000\n");
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == -EINVAL && strstr(why, path) && strstr(why, "must not exceed ack-cap-ms"),
	       "load: a deadline above the cap is refused (%s)", why);

	/* A refused load leaves the output alone, even after good lines. */
	write_file(path, "max-clients=3\nmax-subs=4\nmax-queued=huge\n");
	out = d;
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == -EINVAL && strstr(why, ":3: max-queued") && memcmp(&out, &d, sizeof(d)) == 0,
	       "load: a bad line 3 refuses the file and changes nothing (%s)", why);

	{
		char *big = malloc(CONFIG_FILE_MAX + 2);

		tap_require(big);
		memset(big, '\n', CONFIG_FILE_MAX + 1);
		big[CONFIG_FILE_MAX + 1] = 0;
		write_file(path, big);
		free(big);
	}
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == -EFBIG && strstr(why, "larger than"), "load: a file above 64 KiB is refused (%s)", why);
	config_init(&c, dir, true, NULL);
	r = mmn__config_load(&c, &out, why, sizeof(why));
	tap_ok(r == -EISDIR && strstr(why, dir), "load: a directory is refused (%s)", why);
	unlink(path);
}

/* Every key in the table is findable and appears in the example, commented out with its default. */
static void test_example(const char *example)
{
	struct config_settings d, s;
	char *text, *plain, why[512], line[160], val[64];
	size_t n = 0;
	FILE *f;

	f = fopen(example, "r");
	tap_require(f);
	text = calloc(1, CONFIG_FILE_MAX + 1);
	plain = calloc(1, CONFIG_FILE_MAX + 1);
	tap_require(text && plain);
	n = fread(text, 1, CONFIG_FILE_MAX, f);
	fclose(f);
	mmn__config_settings_init(&d);
	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		const char *name = mmn__config_key_name((enum config_key)k);

		tap_ok(mmn__config_key_find(name) == k, "key %s: found by name", name);
		mmn__config_format(&d, (enum config_key)k, val, sizeof(val));
		if (strcmp(val, "(default)") == 0)
			snprintf(line, sizeof(line), "\n#%s=", name);
		else
			snprintf(line, sizeof(line), "\n#%s=%s\n", name, val);
		tap_ok(strstr(text, line) != NULL, "example: has \"%s\"", line + 1);
	}
	/* Uncommented, the example's key lines parse. */
	for (size_t i = 0, j = 0; i < n; i++)
		if (!(text[i] == '#' && (i == 0 || text[i - 1] == '\n') && i + 1 < n && text[i + 1] != ' ' &&
		      text[i + 1] != '\n'))
			plain[j++] = text[i];
	tap_ok(parse(plain, &s, why, sizeof(why)) == 0 && s.given == (1u << CONFIG_N_KEYS) - 1,
	       "example: uncommented, it parses and sets every key (%s)", why);
	tap_ok(memcmp(&s.o, &d.o, sizeof(d.o)) == 0 && s.log_level == d.log_level,
	       "example: its values are the built-in defaults");
	free(text);
	free(plain);
}

/* Each bounded option that is a config key takes 1..max, as broker.h lists it, into its own field. */
static void test_bounds(void)
{
	size_t n, keys = 0;
	const struct broker_option_bound *b = mmn__broker_option_bounds(&n);
	char why[256], v[32];

	for (size_t i = 0; i < n; i++) {
		struct config_settings s;
		int k = mmn__config_key_find(b[i].name);

		if (k < 0)
			continue;
		keys++;
		mmn__config_settings_init(&s);
		snprintf(v, sizeof(v), "%" PRIu32, b[i].max);
		tap_ok(mmn__config_set(&s, (enum config_key)k, v, why, sizeof(why)) == 0 &&
			       *(uint32_t *)((char *)&s.o + b[i].off) == b[i].max,
		       "bounds: %s takes its maximum %s into its field", b[i].name, v);
		snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)b[i].max + 1);
		tap_ok(mmn__config_set(&s, (enum config_key)k, v, why, sizeof(why)) == -ERANGE,
		       "bounds: %s refuses %s", b[i].name, v);
		tap_ok(mmn__config_set(&s, (enum config_key)k, "0", why, sizeof(why)) == -ERANGE,
		       "bounds: %s refuses 0", b[i].name);
	}
	tap_ok(keys == 8, "bounds: the 8 numeric config keys are bounded broker options (%zu)", keys);
}

int main(void)
{
	const char *example = getenv("MMND_CONF_EXAMPLE");

	tap_require(mkdtemp(dir) != NULL);
	test_good();
	test_errors();
	test_load();
	test_bounds();
	if (example)
		test_example(example);
	else
		tap_diag("MMND_CONF_EXAMPLE not set: the example is not checked");
	rmdir(dir);
	return tap_done();
}
