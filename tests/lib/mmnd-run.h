/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Start mmnd for a test and wait until it is ready, stop or kill it.
 *
 *   struct mmnd_run m;
 *   mmnd_run_init(&m, argv[1]);              a private socket directory
 *   mmnd_run_start(&m, extra_args, 20000);   --ready-fd, waits for READY=1
 *   ... mmn_connect(m.sock, ...) ...
 *   mmnd_run_kill(&m, SIGKILL, 5000);        signal, then reap (bounded)
 *   mmnd_run_start(&m, extra_args, 20000);   again, same socket path
 *   mmnd_run_fini(&m);                       stops it if running, removes the dir
 *
 * mmnd always gets --socket=<m.sock> --ready-fd=3 --foreground and, unless
 * @extra_args names them, --bus=none --source=uffd --log-level=warning.
 * Its stdout goes to stderr so that a TAP stream on stdout stays clean, or
 * both to m.log when set.  Set m.wrapper to run mmnd under another program
 * (valgrind).  mmnd_run_init() is optional: a caller with its own socket
 * path sets m.exe and m.sock itself.
 * Single-threaded use: one struct per daemon, owned by the caller.
 */
#ifndef MMN_TESTS_MMND_RUN_H
#define MMN_TESTS_MMND_RUN_H

/* Also what callers of mmnd_run_uffd() use around it (pipe2 flags, printf). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct mmnd_run {
	const char *exe; /* the mmnd binary */
	/* argv run in front of mmnd (e.g. valgrind and its options), NULL-terminated; or NULL */
	const char *const *wrapper;
	const char *log; /* file for mmnd's stdout and stderr, or NULL: the test's stderr */
	pid_t pid;	 /* running daemon, or 0 */
	char dir[64];	 /* private temp dir holding the socket */
	char sock[128];	 /* dir/mmnd.sock */
};

/* Creates the socket directory; 0 or -errno. */
int mmnd_run_init(struct mmnd_run *m, const char *exe);

/*
 * Forks and execs mmnd with @extra_args (NULL-terminated, may be NULL) and
 * waits at most @timeout_ms for READY=1 on its ready fd.  0 when ready;
 * -ETIMEDOUT, -EIO (mmnd exited or wrote something else; it is reaped) or
 * another -errno.  On failure nothing is left running.
 */
int mmnd_run_start(struct mmnd_run *m, const char *const *extra_args, int timeout_ms);

/*
 * Sends @sig to the daemon and reaps it, waiting at most @timeout_ms (then
 * SIGKILL).  Returns the wait status, or -ETIMEDOUT when @sig did not end it
 * in time (it was SIGKILLed and reaped), or -ESRCH when none runs.
 */
int mmnd_run_kill(struct mmnd_run *m, int sig, int timeout_ms);

/*
 * The short form: start MMND with @extra_args (as mmnd_run_start()) on @sock
 * (no directory is created or removed) and wait at most @timeout_ms for it
 * to be ready.  Returns its pid (the caller kills and reaps it), or -1 after
 * a TAP diagnostic.
 */
pid_t mmnd_run_at(const char *mmnd, const char *sock, const char *const *extra_args, int timeout_ms);

/* mmnd_run_at() of `MMND --source=uffd` on @sock, waiting at most 20 s. */
pid_t mmnd_run_uffd(const char *mmnd, const char *sock);

/* Whether this process can create a userfaultfd (the uffd source needs it in clients). */
bool mmnd_run_uffd_available(void);

/* Kills a running daemon and removes the socket and its directory. */
void mmnd_run_fini(struct mmnd_run *m);

#endif
