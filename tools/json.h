/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A tiny streaming JSON writer for mmnctl's --json output: objects, arrays,
 * strings (escaped per RFC 8259), unsigned and signed integers, booleans.
 * It tracks commas and indentation and nothing else; the caller nests
 * begin/end calls correctly.  No allocation.
 */
#ifndef MMN_TOOLS_JSON_H
#define MMN_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
	FILE *f;
	bool pretty;
	int depth;
	bool need_comma[JSON_MAX_DEPTH];
	bool after_key;
};

void json_init(struct json *j, FILE *f, bool pretty);
void json_begin_object(struct json *j);
void json_end_object(struct json *j);
void json_begin_array(struct json *j);
void json_end_array(struct json *j);
void json_key(struct json *j, const char *key);
void json_string(struct json *j, const char *s);
void json_u64(struct json *j, uint64_t v);
void json_i64(struct json *j, int64_t v);
void json_bool(struct json *j, bool v);
/* Ends the document with a newline. */
void json_finish(struct json *j);

/* "DefaultAckTimeoutMSec" -> "default_ack_timeout_msec" into @buf. */
void json_snake_case(const char *camel, char *buf, size_t size);

#endif
