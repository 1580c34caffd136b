/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The OOM killer and reaper in tests: a memory cgroup capped at 48M without
 * swap, and a victim in it whose memory the tests subscribe to.
 *
 * The victim must outlive the OOM kill for the reaper to run (the reaper
 * waits 2 s for the victim to exit on its own): on the first command byte a
 * second thread of the victim starts a madvise(MADV_DONTNEED) of a shared
 * page, which the reaper skips, and sleeps in it while the test holds that
 * invalidation; on the second byte the victim allocates until it is killed.
 * The structure is owned by the test's thread.
 */
#ifndef MMN_TESTS_OOM_H
#define MMN_TESTS_OOM_H

#include <stdint.h>

#include "target.h"

/* Bytes of the victim's populated anonymous memory at r1. */
#define OOM_R1 (8UL << 20)
/* mmnd's granule of kernel subscriptions with mmn.ko (source caps.ksub_granule). */
#define OOM_GRANULE (2UL << 20)

struct oom_victim {
	struct target t; /* t.cmd: "g" starts the blocker thread, then any byte the allocation */
	uint64_t r1; /* OOM_R1 bytes, private anonymous, populated */
	uint64_t r2; /* one shared (memfd) page alone in a granule of shared PROT_NONE memory */
};

/*
 * Mounts cgroup2 on /sys/fs/cgroup if it is not, enables the memory
 * controller and makes @cg with memory.max 48M and memory.swap.max 0.
 * 0, -ENODEV (no cgroup2 memory controller: the test skips) or -errno.
 */
int oom_cgroup(const char *cg);

/*
 * Forks the victim (a target of target.h keeping no other descriptor), which
 * joins @cg, maps its memory and reports r1 and r2 (waited for at most 5 s).
 * 0 or -errno; the victim exits 10-16 when one of its steps fails.  @cg must
 * stay valid until it returns.
 */
int oom_victim_spawn(struct oom_victim *v, const char *cg);

#endif
