/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A libfabric program that knows nothing of mmn: it imports a memory
 * monitor of its own and prints the result ("import=0", or
 * "import=-16" when a monitor was imported before main(), by a preloaded
 * libmmn-libfabric).  Run by test-libfabric-preload.
 */
#include <stdio.h>

#include <rdma/fabric.h>
#include <rdma/fi_ext.h>

static int p_start(struct fid_mem_monitor *m)
{
	return 0;
}

static void p_stop(struct fid_mem_monitor *m)
{
}

static int p_subscribe(struct fid_mem_monitor *m, const void *addr, size_t len)
{
	return 0;
}

static void p_unsubscribe(struct fid_mem_monitor *m, const void *addr, size_t len)
{
}

static bool p_valid(struct fid_mem_monitor *m, const void *addr, size_t len)
{
	return true;
}

int main(void)
{
	static struct fi_ops_mem_monitor ops = {
		.size = sizeof(ops),
		.start = p_start,
		.stop = p_stop,
		.subscribe = p_subscribe,
		.unsubscribe = p_unsubscribe,
		.valid = p_valid,
	};
	static struct fid_mem_monitor mon = {.fid = {.fclass = FI_CLASS_MEM_MONITOR}, .export_ops = &ops};
	struct fid *cache;
	int ret = fi_open(FI_VERSION(1, 13), "mr_cache", NULL, 0, 0, &cache, NULL);

	if (!ret) {
		ret = fi_import_fid(cache, &mon.fid, 0);
		fi_close(cache);
	}
	printf("import=%d\n", ret);
	return 0;
}
