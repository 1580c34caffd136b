/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD=libmmn-libfabric.so: import the monitor before main(), so
 * before the application opens a domain.  It acts when the library is
 * preloaded ($LD_PRELOAD names it) or MMN_LIBFABRIC=1, never when
 * MMN_LIBFABRIC=0; a runtime that links the library calls
 * mmn_libfabric_import() itself.  A failure is reported once on stderr
 * and leaves libfabric with its own monitors; it never ends the program.
 * Once imported, the first failed subscription is reported the same way;
 * MMN_LIBFABRIC_STATS=1 prints the monitor's counters at exit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "mmn/libfabric.h"
#include "mmn/mmn.h"

static bool wanted(void)
{
	const char *v = getenv("MMN_LIBFABRIC"), *pre = getenv("LD_PRELOAD");

	if (v && *v)
		return strcmp(v, "0") != 0;
	return pre && strstr(pre, "libmmn-libfabric");
}

/* MMN_LIBFABRIC_STATS=1: the monitor's counters on stderr at exit. */
static void print_stats(void)
{
	struct mmn_libfabric_stats st;

	if (mmn_libfabric_stats(&st, sizeof(st)))
		return;
	fprintf(stderr,
		"libmmn-libfabric: subs %" PRIu64 " subscribes %" PRIu64 " unsubscribes %" PRIu64
		" merges %" PRIu64 " evictions %" PRIu64 " invalidations %" PRIu64 " notifies %" PRIu64
		" valid_hits %" PRIu64 " valid_misses %" PRIu64 " late_acks %" PRIu64 " errors %" PRIu64
		" resyncs %" PRIu64 "\n",
		st.subs, st.subscribes, st.unsubscribes, st.merges, st.evictions, st.invalidations,
		st.notifies, st.valid_hits, st.valid_misses, st.late_acks, st.errors, st.resyncs);
}

__attribute__((constructor)) static void preload_import(void)
{
	struct mmn_libfabric_opts o = {.size = sizeof(o)};
	const char *max = getenv("MMN_LIBFABRIC_MAX_SUBS");
	int ret;

	if (!wanted())
		return;
	if (max && *max) {
		char *end;
		unsigned long v = strtoul(max, &end, 10);

		if (*end || !v || v > 1u << 20) {
			fprintf(stderr, "libmmn-libfabric: MMN_LIBFABRIC_MAX_SUBS=%s is not 1..1048576; "
					"libfabric keeps its own memory monitor\n", max);
			return;
		}
		o.max_subs = (unsigned)v;
	}
	mlf_import_report_errors(true);
	ret = mmn_libfabric_import(&o);
	if (ret && ret != -EALREADY)
		fprintf(stderr, "libmmn-libfabric: not imported, libfabric keeps its own memory monitor: %s\n",
			mmn_strerror(ret));
	else if (getenv("MMN_LIBFABRIC_STATS") && !strcmp(getenv("MMN_LIBFABRIC_STATS"), "1"))
		atexit(print_stats);
}
