/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The import: the monitor as libfabric's struct fid_mem_monitor.  libfabric
 * (1.13 and later) keeps one imported monitor per process and never lets it
 * go, so the import, its client and its monitor live until the process ends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_ext.h>

#include "import.h"
#include "monitor.h"
#include "mmn/libfabric.h"

#define MLF_EXPORT __attribute__((visibility("default")))

/*
 * The one import of the process.  import_lock serialises
 * mmn_libfabric_import(); mon is written once under it, before libfabric
 * can call the ops, and read without it afterwards.
 */
static pthread_mutex_t import_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fid_mem_monitor imp_fid;
static struct mlf_monitor *imp_mon;
/* mlf_import_report_errors(); reported: the one report was made. */
static bool report, reported;

void mlf_import_report_errors(bool on)
{
	__atomic_store_n(&report, on, __ATOMIC_RELAXED);
}

/* libfabric calls it under its monitor state lock: mlf_start() only queues. */
static int mon_start(struct fid_mem_monitor *fm)
{
	mlf_start(imp_mon);
	return 0;
}

static void mon_stop(struct fid_mem_monitor *fm)
{
	mlf_stop(imp_mon);
}

/* libfabric calls it under its cache lock, on a miss. */
static int mon_subscribe(struct fid_mem_monitor *fm, const void *addr, size_t len)
{
	int ret = mlf_subscribe(imp_mon, (uint64_t)(uintptr_t)addr, len);

	/* -EAGAIN: invalidated while subscribing, nothing wrong. */
	if (ret && ret != -EAGAIN && __atomic_load_n(&report, __ATOMIC_RELAXED) &&
	    !__atomic_exchange_n(&reported, true, __ATOMIC_RELAXED))
		fprintf(stderr,
			"libmmn-libfabric: watching %p+%zu failed: %s; such registrations stay uncached "
			"(reported once)\n",
			addr, len, mmn_strerror(ret));
	return ret;
}

/*
 * libfabric 1.17's cache never calls it; subscriptions are shared by
 * merged ranges, so one entry's end does not end its subscription: the
 * monitor drops subscriptions when they are invalidated or evicted.
 */
static void mon_unsubscribe(struct fid_mem_monitor *fm, const void *addr, size_t len)
{
}

/* libfabric calls it under its cache lock, on every hit. */
static bool mon_valid(struct fid_mem_monitor *fm, const void *addr, size_t len)
{
	return mlf_valid(imp_mon, (uint64_t)(uintptr_t)addr, len);
}

static struct fi_ops_mem_monitor mon_ops = {
	.size = sizeof(struct fi_ops_mem_monitor),
	.start = mon_start,
	.stop = mon_stop,
	.subscribe = mon_subscribe,
	.unsubscribe = mon_unsubscribe,
	.valid = mon_valid,
};

/* The monitor's notifier thread: libfabric's notify takes its cache lock. */
static void cache_notify(void *ctx, uint64_t start, uint64_t len)
{
	struct fid_mem_monitor *fm = ctx;

	if (len > SIZE_MAX)
		len = SIZE_MAX;
	fm->import_ops->notify(fm, (const void *)(uintptr_t)start, (size_t)len);
}

/* Hand imp_fid to libfabric's MR cache; 0 or a negative errno (FI_E* are errnos). */
static int cache_import(void)
{
	struct fid *cache;
	int ret;

	imp_fid = (struct fid_mem_monitor){
		.fid = {.fclass = FI_CLASS_MEM_MONITOR},
		.export_ops = &mon_ops,
	};
	ret = fi_open(FI_VERSION(1, 13), "mr_cache", NULL, 0, 0, &cache, NULL);
	if (ret)
		return ret;
	ret = fi_import_fid(cache, &imp_fid.fid, 0);
	fi_close(cache);
	return ret;
}

static int copy_opts(const struct mmn_libfabric_opts *in, struct mmn_libfabric_opts *o)
{
	*o = (struct mmn_libfabric_opts){.size = sizeof(*o)};
	if (!in)
		return 0;
	if (in->size < sizeof(size_t))
		return -EINVAL;
	for (size_t i = sizeof(*o); i < in->size; i++)
		if (((const unsigned char *)in)[i])
			return -E2BIG;
	memcpy(o, in, in->size < sizeof(*o) ? in->size : sizeof(*o));
	o->size = sizeof(*o);
	return 0;
}

MLF_EXPORT int mmn_libfabric_import(const struct mmn_libfabric_opts *opts)
{
	struct mmn_libfabric_opts o;
	struct mmn_client *c = NULL;
	struct mlf_monitor *m = NULL;
	int ret = copy_opts(opts, &o);

	if (ret)
		return ret;
	pthread_mutex_lock(&import_lock);
	ret = -EALREADY;
	if (imp_mon)
		goto out;
	ret = mmn_connect(o.socket_path, &c);
	if (!ret)
		ret = mlf_create(c, o.max_subs, cache_notify, &imp_fid, &m);
	if (!ret) {
		imp_mon = m;
		ret = cache_import();
		if (ret)
			imp_mon = NULL;
	}
	if (ret) {
		mlf_destroy(m);
		mmn_disconnect(c);
	}
out:
	pthread_mutex_unlock(&import_lock);
	return ret;
}

MLF_EXPORT int mmn_libfabric_stats(struct mmn_libfabric_stats *out, size_t size)
{
	struct mmn_libfabric_stats st;
	struct mlf_monitor *m;

	if (!out)
		return -EINVAL;
	pthread_mutex_lock(&import_lock);
	m = imp_mon;
	pthread_mutex_unlock(&import_lock);
	if (!m)
		return -ENODEV;
	mlf_stats(m, &st);
	memcpy(out, &st, size < sizeof(st) ? size : sizeof(st));
	return 0;
}
