/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/e2e's raw driver of mmn.ko: the module's own round trip, with no
 * mmnd.  Its own file because the module's uapi header and libmmn's both
 * name enum mmn_event.
 */
#ifndef MMN_BENCH_E2E_DRIVER_H
#define MMN_BENCH_E2E_DRIVER_H

#include <stdint.h>
#include <sys/types.h>

/*
 * Runs in a child process, never returns: binds, subscribes @pid's
 * [@start, @start + @len) BLOCKING, writes one byte to @ready, then acks
 * every INVALIDATE that needs it until @stop is readable.  Exit status 0,
 * or 1 when a request failed.
 */
void e2e_raw_driver(pid_t pid, uint64_t start, uint64_t len, int ready, int stop) __attribute__((noreturn));

#endif
