/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Memory operations a target (target.h) performs on request: the test sends
 * a struct target_cmd, the target answers with a struct target_res telling
 * when the operation started and returned (CLOCK_MONOTONIC), so that tests
 * can order it against the events it caused.  The target maps nothing
 * itself (T_MMAP does) and keeps no descriptor but its pipes
 * (TARGET_CLOSE_FDS).  Used by one test thread.
 */
#ifndef MMN_TESTS_TARGET_OP_H
#define MMN_TESTS_TARGET_OP_H

#include <stdint.h>

#include "target.h"

enum target_op {
	T_MMAP,		/* len, arg = 1: MADV_HUGEPAGE and 2 MiB aligned; val = addr */
	T_MUNMAP,	/* addr, len */
	T_MPROTECT,	/* addr, len, arg = prot */
	T_MADVISE,	/* addr, len, arg = advice */
	T_MREMAP,	/* addr, len, arg = new address (MREMAP_FIXED) */
	T_TOUCH,	/* addr, len: write every page */
	T_FORK,		/* fork a child that exits; wait for it */
	T_EXEC,		/* execve /bin/true (no reply) */
	T_EXIT,		/* _exit(0) (no reply) */
	T_MERGEABLE,	/* addr, len: fill with one pattern, MADV_MERGEABLE */
	T_MOVE_PAGES,	/* addr, len, arg = node */
	T_LOOP,		/* addr, len, arg = seconds: munmap/mmap/mprotect/fault loop */
	T_BENCH,	/* addr, len = iterations: mmap+touch+munmap one page at addr;
			 * val = median, val2 = mean munmap time (ns) */
};

struct target_cmd {
	int op;
	uint64_t addr, len, arg;
};

struct target_res {
	int64_t ret;
	int err;
	int64_t t0, t1;		/* ns, CLOCK_MONOTONIC, around the operation */
	uint64_t val, val2;
};

/* Spawns the target (target_spawn()); 0 or -errno. */
int target_op_start(struct target *t);
int target_op_send(struct target *t, int op, uint64_t addr, uint64_t len, uint64_t arg);
/* 1: result read; 0: none within timeout_ms; -errno (EOF: -EPIPE). */
int target_op_recv(struct target *t, struct target_res *r, int timeout_ms);
/* send + recv with a generous timeout; returns the operation's ret */
int64_t target_op_do(struct target *t, int op, uint64_t addr, uint64_t len, uint64_t arg,
		     struct target_res *r);
/* ask the target to exit (if alive) and reap it; returns its wait status */
int target_op_stop(struct target *t);

#endif
