/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mmn_libfabric_import() through libfabric's real import path (fi_open
 * "mr_cache", fi_import_fid): argument checks, no mmnd (libfabric keeps
 * its monitors: a later import works), the import, -EALREADY for a second
 * one, -EBUSY for anyone else's monitor afterwards, and the counters.
 *   test-libfabric-import MMND
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_ext.h>

#include "lib/mmnd-run.h"
#include "mmn/libfabric.h"
#include "mmn/mmn.h"
#include "tap.h"

static int o_start(struct fid_mem_monitor *m)
{
	return 0;
}

static void o_stop(struct fid_mem_monitor *m)
{
}

static int o_subscribe(struct fid_mem_monitor *m, const void *addr, size_t len)
{
	return 0;
}

static void o_unsubscribe(struct fid_mem_monitor *m, const void *addr, size_t len)
{
}

static bool o_valid(struct fid_mem_monitor *m, const void *addr, size_t len)
{
	return true;
}

/* Another monitor's import, as any libfabric user would do it. */
static int import_other(void)
{
	static struct fi_ops_mem_monitor ops = {
		.size = sizeof(ops),
		.start = o_start,
		.stop = o_stop,
		.subscribe = o_subscribe,
		.unsubscribe = o_unsubscribe,
		.valid = o_valid,
	};
	static struct fid_mem_monitor mon = {.fid = {.fclass = FI_CLASS_MEM_MONITOR}, .export_ops = &ops};
	struct fid *cache;
	int ret = fi_open(FI_VERSION(1, 13), "mr_cache", NULL, 0, 0, &cache, NULL);

	if (ret)
		return ret;
	ret = fi_import_fid(cache, &mon.fid, 0);
	fi_close(cache);
	return ret;
}

static void test_args(void)
{
	struct mmn_libfabric_opts bad = {.size = 0};
	struct {
		struct mmn_libfabric_opts o;
		uint64_t more;
	} big = {.o = {.size = sizeof(big)}, .more = 1};
	struct mmn_libfabric_stats st;

	tap_is_int(mmn_libfabric_stats(&st, sizeof(st)), -ENODEV, "stats before the import: -ENODEV");
	tap_is_int(mmn_libfabric_stats(NULL, sizeof(st)), -EINVAL, "stats into NULL: -EINVAL");
	tap_is_int(mmn_libfabric_import(&bad), -EINVAL, "opts.size 0: -EINVAL");
	tap_is_int(mmn_libfabric_import(&big.o), -E2BIG, "unknown non-zero opts: -E2BIG");
}

int main(int argc, char **argv)
{
	struct mmn_libfabric_opts o = {.size = sizeof(o), .max_subs = 8};
	struct mmn_libfabric_stats st;
	struct mmnd_run d;
	int ret;

	if (argc != 2)
		tap_skip_all("usage: test-libfabric-import MMND");
	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd unavailable (or under valgrind): the uffd source cannot run here");
	signal(SIGPIPE, SIG_IGN);
	tap_require(mmnd_run_init(&d, argv[1]) == 0);
	test_args();

	o.socket_path = "/nonexistent/mmnd.sock";
	ret = mmn_libfabric_import(&o);
	tap_ok(ret == -ENOENT || ret == -ECONNREFUSED, "no mmnd: %d (%s)", ret, mmn_strerror(ret));
	tap_is_int(mmn_libfabric_stats(&st, sizeof(st)), -ENODEV, "not imported after the failure");

	tap_require(mmnd_run_start(&d, NULL, 20000) == 0);
	o.socket_path = d.sock;
	tap_is_int(mmn_libfabric_import(&o), 0, "import");
	tap_is_int(mmn_libfabric_import(&o), -EALREADY, "import again: -EALREADY");
	tap_is_int(import_other(), -FI_EBUSY, "another monitor's import: -FI_EBUSY");
	tap_is_int(mmn_libfabric_stats(&st, sizeof(st)), 0, "stats");
	tap_is_u64(st.subs, 0, "no subscription before any registration");
	tap_is_u64(st.errors, 0, "no error");

	/* The monitor lives until the process ends (libfabric never lets it go). */
	mmnd_run_fini(&d);
	return tap_done();
}
