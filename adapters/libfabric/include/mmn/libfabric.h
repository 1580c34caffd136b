/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn-libfabric: libfabric's memory monitor on mmn.  Link with
 * -lmmn-libfabric, or preload libmmn-libfabric.so into an unmodified
 * libfabric application (see libmmn-libfabric(7)).
 *
 * The monitor is imported into libfabric's MR cache (fi_import_fid() of a
 * struct fid_mem_monitor, libfabric >= 1.13): every cache entry's range is
 * watched through mmnd, and a change of its mapping (munmap, mprotect,
 * migration, ... whatever mmnd's source reports) drops the entry before
 * the kernel's change completes when the source holds the kernel (mmn.ko),
 * as soon as mmnd reports it otherwise (userfaultfd).  Once imported the
 * monitor stays for the life of the process.
 */
#ifndef MMN_LIBFABRIC_H
#define MMN_LIBFABRIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mmn_libfabric_opts {
	size_t size;		 /* sizeof(struct mmn_libfabric_opts) */
	const char *socket_path; /* NULL: $MMN_SOCKET, or /run/mmn/mmnd.sock */
	unsigned max_subs;	 /* subscriptions kept at most (LRU); 0: 1024 */
};

/**
 * mmn_libfabric_import() - connect to mmnd and make the monitor libfabric's
 * default memory monitor.  Call it before the first fi_domain() (when
 * preloaded, the library's constructor does).  @opts may be NULL.
 * Return: 0; -EALREADY (this library's monitor is imported already);
 * -EBUSY (libfabric has another imported monitor, or its default monitor
 * already serves a cache); -EINVAL, -E2BIG (opts); mmn_connect()'s errors
 * (-ENOENT, -ECONNREFUSED: no mmnd; ...); -ENOMEM; -ENOSYS (libfabric
 * refused the import).  On failure libfabric keeps its own monitors.
 */
int mmn_libfabric_import(const struct mmn_libfabric_opts *opts);

/* Counters of the imported monitor, since the import. */
struct mmn_libfabric_stats {
	uint64_t subs;		/* subscriptions held now (bounded by max_subs) */
	uint64_t subscribes;	/* subscriptions made with mmnd */
	uint64_t unsubscribes;	/* subscriptions removed from mmnd (held there: the difference) */
	uint64_t merges;	/* subscriptions replaced by a larger merged one */
	uint64_t evictions;	/* subscriptions dropped to stay within max_subs */
	uint64_t invalidations; /* invalidations mmnd delivered */
	uint64_t notifies;	/* ranges handed to libfabric's notify */
	uint64_t valid_hits;	/* valid() calls that kept the entry */
	uint64_t valid_misses;	/* valid() calls that dropped it */
	uint64_t late_acks;	/* acks sent before notify finished (notify was held up) */
	uint64_t errors;	/* failed subscriptions (the entry was not cached) */
	/* RESYNC invalidations: one per subscription after libmmn reconnected (mmnd restarted) */
	uint64_t resyncs;
};

/**
 * mmn_libfabric_stats() - copy the counters into @out (@size bytes of it,
 * sizeof(*out) normally).  Return: 0, -EINVAL, -ENODEV (not imported).
 */
int mmn_libfabric_stats(struct mmn_libfabric_stats *out, size_t size);

#ifdef __cplusplus
}
#endif

#endif
