/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A target process for tests of mmnd, its sources and mmn.ko: a forked
 * child that maps anonymous memory, writes the mapping's address (uint64_t)
 * on its report pipe, then obeys commands on its command pipe.  The test's
 * @body decides what the commands do; the helper does the fork, the
 * mapping, the pipes and the bounded wait for the address.
 *
 *   static void body(int cmd, int rep, char *p, size_t len) { ...loop on cmd... }
 *   struct target t;
 *   target_spawn(&t, len, TARGET_FILL, body);   t.addr, t.len are set
 *   write(t.cmd, "u", 1); ... read(t.rep, ...)
 *   target_end(&t);                closes the pipes, SIGKILLs and reaps it
 *
 * target-op.h gives a ready-made body: memory operations on request.
 * The structure is owned by the test's thread; the pipes are O_CLOEXEC.
 */
#ifndef MMN_TESTS_TARGET_H
#define MMN_TESTS_TARGET_H

#include <stdint.h>
#include <sys/types.h>

struct target {
	pid_t pid;
	int cmd; /* write: the test's commands */
	int rep; /* read: the address, then what @body reports */
	uint64_t addr, len;
	uint64_t times[2]; /* for the test: e.g. CLOCK_MONOTONIC around a munmap */
};

/* @flags of target_spawn(). */
#define TARGET_FILL 1	   /* the mapping is populated and every byte is 0x5a */
#define TARGET_POPULATE 2  /* the mapping is populated (MAP_POPULATE), left zero */
#define TARGET_NO_MAP 4	   /* no mapping: the address reported is 0, @p is NULL */
/*
 * The child keeps no descriptor but 0-2 and its two pipes (moved to 100 and
 * 101): a target holding e.g. a test driver's netlink socket would keep that
 * socket bound after the driver closed it.
 */
#define TARGET_CLOSE_FDS 8

/*
 * Forks a child that maps @len bytes (read/write, private, anonymous), reports
 * the address and runs body(cmd, rep, p, len); the child exits (0) when body
 * returns, 2 when the mapping fails, 3 when the report does.  Waits at most
 * 5 s for the address.  0, -EIO (no address) or -errno.
 */
int target_spawn(struct target *t, uint64_t len, int flags,
		 void (*body)(int cmd, int rep, char *p, size_t len));

/* Closes the pipes, SIGKILLs the child and reaps it. */
void target_end(struct target *t);

#endif
