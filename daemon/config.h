/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd's settings: the one table of the options that both the command line
 * (main.c) and the configuration file (mmnd.conf(5)) set, their validation,
 * the file's strict KEY=VALUE parser, and the merge
 * built-in defaults < file < command line.
 *
 * The file: one KEY=VALUE per line, blanks around KEY and VALUE ignored,
 * '#' as the first non-blank starts a comment line, blank lines allowed.
 * KEY is a long option's name without "--".  Refused, with PATH:LINE and
 * the key when there is one: unknown or repeated keys, bad values, lines
 * longer than CONFIG_LINE_MAX - 1 bytes, control bytes (tab excepted),
 * invalid UTF-8, a line without '='.
 *
 * Single-threaded (the loop thread, or main before it); nothing here
 * keeps a pointer to what it is handed.
 */
#ifndef MMN_DAEMON_CONFIG_H
#define MMN_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

#ifndef MMN_CONFIG_PATH
#define MMN_CONFIG_PATH "/etc/mmn/mmnd.conf"
#endif

#define CONFIG_LINE_MAX	  1024	/* bytes of a line, with its newline */
#define CONFIG_FILE_MAX	  65536 /* bytes of the whole file */
#define CONFIG_SOCKET_MAX 108	/* sizeof(sockaddr_un.sun_path) */
#define CONFIG_BUS_MAX	  512

enum config_key {
	CONFIG_SOURCE,
	CONFIG_SOCKET,
	CONFIG_BUS,
	CONFIG_LOG_LEVEL,
	CONFIG_ACK_TIMEOUT_MS,
	CONFIG_ACK_CAP_MS,
	CONFIG_MAX_CLIENTS,
	CONFIG_MAX_SUBS,
	CONFIG_MAX_QUEUED,
	CONFIG_MAX_CLIENTS_PER_UID,
	CONFIG_MAX_SUBS_PER_UID,
	CONFIG_HELLO_TIMEOUT_MS,
	CONFIG_N_KEYS
};

/* Every setting a key names; "" for a string means "not set: mmnd's default". */
struct config_settings {
	char source[8];			/* auto, kmod, uffd or test */
	char socket[CONFIG_SOCKET_MAX]; /* "": socket activation, else the default path */
	char bus[CONFIG_BUS_MAX];	/* "": system under systemd, else none */
	int log_level;			/* LOG_ERR..LOG_DEBUG */
	struct broker_options o;
	uint32_t given; /* 1u << key for each key that was set */
};

/* The file and the command line behind the running settings; main.c owns it for mmnd's life. */
struct config {
	const char *path;		/* the file; argv's or MMN_CONFIG_PATH */
	bool explicit_path;		/* --config given: a missing file is an error */
	struct config_settings cmdline; /* what the command line set (given) */
	struct config_settings running; /* in force; restart-only keys as mmnd started */
};

const char *mmn__config_key_name(enum config_key k);
/* Whether a reload applies @k to the running daemon (else: at the next restart). */
bool mmn__config_key_live(enum config_key k);
/* The key named @name, or -ENOENT. */
int mmn__config_key_find(const char *name);

/* Built-in defaults, no key given. */
void mmn__config_settings_init(struct config_settings *s);

/*
 * Validate @value for @k and store it in @s (marking @k given).  0, or
 * -EINVAL (-ERANGE: a number out of range) with @why saying what @k must
 * be, without the key's name; @s is then unchanged.
 */
int mmn__config_set(struct config_settings *s, enum config_key k, const char *value, char *why,
		    size_t why_size);

/*
 * Parse the file text @buf (@len bytes, @name for messages) onto @s.
 * 0, or -EINVAL/-ERANGE with @why "NAME:LINE: KEY ..." (the key when
 * the line names one).  On error @s
 * may hold part of the file: callers parse into a copy.
 */
int mmn__config_parse(const char *name, const char *buf, size_t len, struct config_settings *s, char *why,
		      size_t why_size);

/*
 * Defaults < @c's file < @c's command line, cross-checked, into *@out.
 * A missing file is skipped unless explicit_path.  0, or a negative
 * errno with @why "PATH:LINE: ..." (or "PATH: reason"); *@out is then
 * unchanged.
 */
int mmn__config_load(const struct config *c, struct config_settings *out, char *why, size_t why_size);

/* Whether @a and @b agree on @k. */
bool mmn__config_same(const struct config_settings *a, const struct config_settings *b, enum config_key k);
/* @k's value in @s as text ("(default)" for an unset string). */
void mmn__config_format(const struct config_settings *s, enum config_key k, char *buf, size_t size);

#endif
