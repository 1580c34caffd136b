/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * daemon/log.c: the structured journal fields of an entry, and the plain
 * text written to stderr when it is not the journal.  The journal itself is
 * not checked here (no journald in the build environment): the fields go
 * to sd_journal_sendv exactly as mmn__log_fields_format() builds them.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static void test_fields(void)
{
	char out[LOG_FIELDS_MAX][LOG_FIELD_LEN];
	struct log_fields all = {
		.has = LOG_F_CLIENT | LOG_F_SUB | LOG_F_TARGET | LOG_F_EVENT,
		.client_pid = 1234,
		.client_uid = 4294967294u,
		.sub_id = UINT64_MAX,
		.target_pid = 99,
		.event = 18446744073709551614ull,
	};
	struct log_fields sub_only = {.has = LOG_F_SUB, .client_pid = 5, .sub_id = 7};

	tap_is_int(mmn__log_fields_format(NULL, out), 0, "no fields: none");
	tap_is_int(mmn__log_fields_format(&(struct log_fields){0}, out), 0, "nothing in has: none");
	tap_is_int(mmn__log_fields_format(&all, out), LOG_FIELDS_MAX, "every field: LOG_FIELDS_MAX of them");
	tap_is_str(out[0], "CLIENT_PID=1234", "CLIENT_PID");
	tap_is_str(out[1], "CLIENT_UID=4294967294", "CLIENT_UID, the largest uid fits");
	tap_is_str(out[2], "SUB_ID=18446744073709551615", "SUB_ID, 64 bits fit");
	tap_is_str(out[3], "TARGET_PID=99", "TARGET_PID");
	tap_is_str(out[4], "EVENT=18446744073709551614", "EVENT, 64 bits fit");
	tap_is_int(mmn__log_fields_format(&sub_only, out), 1, "only the fields in has");
	tap_is_str(out[0], "SUB_ID=7", "SUB_ID alone: no CLIENT_PID though it is set");
}

/* Not under journald: "<level>message" on stderr, without the fields. */
static void test_stderr(void)
{
	char path[] = "/tmp/mmn-test-log-XXXXXX", buf[256] = "";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	ssize_t n;

	tap_require(fd >= 0 && saved >= 0);
	unlink(path);
	unsetenv("JOURNAL_STREAM");
	dup2(fd, STDERR_FILENO);
	mmn__log_set_level(LOG_INFO);
	mmn__log_fields(LOG_WARNING, MMN_MSGID_CLIENT_EVICT,
			&(struct log_fields){.has = LOG_F_CLIENT, .client_pid = 42, .client_uid = 7},
			"evicted %d", 42);
	mmn__log_fields(LOG_DEBUG, NULL, NULL, "above the level: dropped");
	mmn__log(LOG_ERR, NULL, "plain %s", "too");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	tap_ok(n > 0, "stderr written");
	tap_is_str(buf, "<4>evicted 42\n<3>plain too\n",
		   "stderr: the messages alone, below the level dropped");
}

int main(void)
{
	test_fields();
	test_stderr();
	return tap_done();
}
