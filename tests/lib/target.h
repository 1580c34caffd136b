/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A target process for tests of mmnd and its sources: a forked child that
 * maps memory, writes the mapping's address (uint64_t) on its report pipe,
 * then obeys one-byte commands on its command pipe.  The test's @body
 * decides what the commands do; the helper does the fork, the pipes and
 * the bounded wait for the address.
 *
 *   static void body(int cmd, int rep) { ...mmap, write address, loop... _exit(0); }
 *   struct target t;
 *   target_spawn(&t, body, len);   t.addr, t.len are set
 *   write(t.cmd, "u", 1); ... read(t.rep, ...)
 *   target_end(&t);                closes the pipes, SIGKILLs and reaps it
 *
 * The structure is owned by the test's thread; the pipes are O_CLOEXEC.
 */
#ifndef MMN_TESTS_TARGET_H
#define MMN_TESTS_TARGET_H

#include <stdint.h>
#include <sys/types.h>

struct target {
	pid_t pid;
	int cmd; /* write: the test's one-byte commands */
	int rep; /* read: the address, then what @body reports */
	uint64_t addr, len;
	uint64_t times[2]; /* for the test: e.g. CLOCK_MONOTONIC around a munmap */
};

/*
 * Forks a child running body(cmd, rep) (it must not return) and waits at
 * most 5 s for the address it writes.  @len is what the test records in
 * t->len (the body maps it).  0, -EIO (no address) or -errno.
 */
int target_spawn(struct target *t, void (*body)(int cmd, int rep), uint64_t len);

/* Closes the pipes, SIGKILLs the child and reaps it. */
void target_end(struct target *t);

#endif
