/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test helpers for child processes and bounded waits: run a function in a
 * forked child that reports on a pipe, wait for a descriptor or a child's
 * exit with a timeout (poll, pidfd), never sleep-then-check.
 */
#ifndef MMN_TESTS_CHILD_H
#define MMN_TESTS_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in ns and ms. */
uint64_t mono_ns(void);
uint64_t mono_ms(void);

/* Waits until @fd is readable (or hung up), at most @ms (< 0: forever); true when it is. */
bool fd_wait_readable(int fd, int ms);

/*
 * Reads exactly @len bytes, waiting at most until the absolute
 * mono_ms() deadline @deadline_ms.  0, -ETIMEDOUT, -EPIPE (EOF) or -errno.
 */
int fd_read_deadline(int fd, void *buf, size_t len, uint64_t deadline_ms);

/*
 * Reads bytes from @fd (O_NONBLOCK) until one is @want, skipping others, for
 * at most @ms: 0 when it came, -ETIMEDOUT when not.
 */
int fd_wait_byte(int fd, char want, int ms);

/* Reads exactly @len bytes, blocking (EINTR-safe); 0, or -1 on EOF or an error. */
int fd_read_full(int fd, void *buf, size_t len);

/* Writes all of @buf (EINTR-safe); 0 or -errno. */
int fd_write_all(int fd, const void *buf, size_t len);

/*
 * One forked child running fn(arg, rep, cmd): rep is the write end of a pipe
 * the parent reads as c->rep, cmd the read end of a pipe the parent writes
 * as c->cmd (EOF tells the child to finish).  fn's return value is the
 * child's exit status.  stdout is flushed before the fork.  The new child
 * does not inherit the parent's pipe ends of the other live children.
 * To end the command pipe early, use child_close_cmd(), not close().
 */
struct child {
	pid_t pid;
	int pidfd; /* for bounded waits on the exit; -1 when unavailable */
	int rep;   /* parent reads what the child reports */
	int cmd;   /* parent writes commands */
};

int child_spawn(struct child *c, int (*fn)(void *arg, int rep, int cmd), void *arg);

/*
 * Waits at most @ms for the child to exit (on a pidfd) and reaps it: its
 * wait status, or -ETIMEDOUT (still running, not reaped), or -errno.  Only
 * c->pid and c->pidfd (-1: one is opened for the wait) are used.
 */
int child_wait(struct child *c, int ms);

/* SIGKILLs the child if it still runs, reaps it, closes the pipes. */
void child_kill(struct child *c);

/* Closes c->cmd: the child sees EOF. */
void child_close_cmd(struct child *c);

/* Closes the parent's ends of the pipes and the pidfd (after child_wait succeeded). */
void child_close(struct child *c);

#endif
