/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The memory monitor: libfabric's subscribe/valid/stop on libmmn, with the
 * cache's notify behind a function pointer (import.c binds it to libfabric,
 * the tests to a recorder).
 *
 * Subscriptions: page-granular, merged with the live ones they overlap or
 * touch, at most max_subs live (the least recently used is evicted: its
 * range is notified, since its entries would go unwatched); the cache never
 * unsubscribes.  An invalidation drops its subscription on the userfaultfd
 * source (which watches mappings, not addresses); on mmn.ko (mmu interval
 * notifiers on address ranges) it only disarms it until the range is
 * notified, so a reused address needs no new subscription.
 *
 * Invalidations: the libmmn callback only records the range (no libfabric
 * lock, no allocation) and returns MMN_ACK_LATER; the notifier thread calls
 * notify (which takes libfabric's cache lock), then acks.  From the record
 * on, valid() refuses every entry overlapping the range, so an ack sent
 * before notify ran loses nothing; that happens when a subscribe is in
 * flight (it holds the cache lock notify needs, and mmnd may wait for the
 * kernel that waits for the ack: subscribe acks what is pending and the
 * callback acks at once while it runs), and when notify is held up longer
 * than MLF_ACK_LATE_MS (the keeper thread acks).
 */
#ifndef MMN_LIBFABRIC_MONITOR_H
#define MMN_LIBFABRIC_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmn/libfabric.h"
#include "mmn/mmn.h"

#define MLF_ACK_LATE_MS 50 /* notify held up this long: ack anyway */

struct mlf_monitor;

/* Drop the cache entries overlapping [start, start + len); may take libfabric's locks. */
typedef void (*mlf_notify_fn)(void *ctx, uint64_t start, uint64_t len);

/*
 * A monitor on @c (connected; its library thread is started here if it is
 * not running).  Blocking subscriptions when mmnd's source holds the kernel.
 * Return: 0, -EINVAL, -ENOMEM, -EAGAIN (threads).
 */
int mlf_create(struct mmn_client *c, unsigned max_subs, mlf_notify_fn notify, void *ctx,
	       struct mlf_monitor **out);

/* Stop the threads, remove every subscription, free @m (not @m's client). */
void mlf_destroy(struct mlf_monitor *m);

/* Watch [addr, addr + len) (rounded out to pages).  0 or a negative errno. */
int mlf_subscribe(struct mlf_monitor *m, uint64_t addr, uint64_t len);

/* Whether an entry of [addr, addr + len) is still good.  No syscall. */
bool mlf_valid(struct mlf_monitor *m, uint64_t addr, uint64_t len);

/*
 * A cache starts using the monitor: notify [0, 1) once from the notifier,
 * so that the first real invalidation (maybe under an mmap lock the kernel
 * holds for our ack) does not fault in libfabric's notify path.
 */
void mlf_start(struct mlf_monitor *m);

/* The cache has no user any more: drop every subscription. */
void mlf_stop(struct mlf_monitor *m);

/*
 * Wait until every recorded range is notified, every invalidation ended
 * and every dropped subscription removed (tests).
 */
void mlf_drain(struct mlf_monitor *m);

void mlf_stats(struct mlf_monitor *m, struct mmn_libfabric_stats *out);

#endif
