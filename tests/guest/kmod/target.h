/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A target process for the module tests: a forked child that performs
 * memory operations on request (over pipes) and reports when each started
 * and returned (CLOCK_MONOTONIC), so tests can order them against events.
 */
#ifndef MMN_TEST_TARGET_H
#define MMN_TEST_TARGET_H

#include <stdint.h>
#include <sys/types.h>

enum tgt_op {
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

struct tgt_cmd {
	int op;
	uint64_t addr, len, arg;
};

struct tgt_res {
	int64_t ret;
	int err;
	int64_t t0, t1;		/* ns, CLOCK_MONOTONIC, around the operation */
	uint64_t val, val2;
};

struct tgt {
	pid_t pid;
	int cmd_fd, res_fd;
};

int tgt_start(struct tgt *t);
int tgt_send(struct tgt *t, int op, uint64_t addr, uint64_t len, uint64_t arg);
/* 1: result read; 0: none within timeout_ms; -errno (EOF: -EPIPE). */
int tgt_recv(struct tgt *t, struct tgt_res *r, int timeout_ms);
/* send + recv with a generous timeout; returns the operation's ret */
int64_t tgt_do(struct tgt *t, int op, uint64_t addr, uint64_t len, uint64_t arg,
	       struct tgt_res *r);
/* ask the target to exit (if alive) and reap it; returns its wait status */
int tgt_stop(struct tgt *t);

#endif
