/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD=libmmn-libfabric.so into a libfabric program that knows
 * nothing of mmn (libfabric-probe, which tries to import a monitor of its
 * own): with mmnd the constructor imported first (the probe gets -EBUSY)
 * and says nothing; MMN_LIBFABRIC=0 turns it off; without mmnd, or with a
 * bad MMN_LIBFABRIC_MAX_SUBS, it prints one line on stderr and leaves
 * libfabric alone (the probe's import works), and the program runs on.
 *   test-libfabric-preload MMND LIBMMN_LIBFABRIC PROBE
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/mmnd-run.h"
#include "tap.h"

struct run {
	char out[512], err[1024];
	int status;
};

/* Read @fd to its end into @buf (NUL-terminated), 10 s at most. */
static void slurp(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, 10000) != 1)
			break;
		r = read(fd, buf + n, size - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == size - 1)
			break;
	}
	buf[n] = 0;
}

/* Run @probe with @env added (NAME=VALUE strings, NULL-terminated). */
static void run(struct run *r, const char *probe, const char *const *env)
{
	int po[2], pe[2];
	pid_t pid;

	if (pipe(po) || pipe(pe) || (pid = fork()) < 0) {
		perror("test-libfabric-preload: pipe/fork");
		exit(1);
	}
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		for (const char *const *e = env; *e; e++)
			putenv((char *)*e);
		execl(probe, probe, (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	slurp(po[0], r->out, sizeof(r->out));
	slurp(pe[0], r->err, sizeof(r->err));
	close(po[0]);
	close(pe[0]);
	waitpid(pid, &r->status, 0);
}

static unsigned lines_from_us(const char *err)
{
	unsigned n = 0;

	for (const char *p = err; (p = strstr(p, "libmmn-libfabric:")); p++)
		n++;
	return n;
}

int main(int argc, char **argv)
{
	char preload[4200], sock_env[200];
	struct mmnd_run d;
	struct run r;

	if (argc != 4)
		tap_skip_all("usage: test-libfabric-preload MMND LIBMMN_LIBFABRIC PROBE");
	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd unavailable (or under valgrind): the uffd source cannot run here");
	if (getenv("MMN_TEST_SANITIZED"))
		tap_skip_all("sanitized build: a preloaded library would come before the ASan runtime");
	signal(SIGPIPE, SIG_IGN);
	unsetenv("MMN_LIBFABRIC");
	unsetenv("MMN_LIBFABRIC_MAX_SUBS");
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", argv[2]);
	tap_require(mmnd_run_init(&d, argv[1]) == 0);
	tap_require(mmnd_run_start(&d, NULL, 20000) == 0);
	snprintf(sock_env, sizeof(sock_env), "MMN_SOCKET=%s", d.sock);

	run(&r, argv[3], (const char *const[]){sock_env, NULL});
	tap_is_str(r.out, "import=0\n", "not preloaded: the program imports its own monitor");

	run(&r, argv[3], (const char *const[]){preload, sock_env, NULL});
	tap_is_str(r.out, "import=-16\n", "preloaded: the monitor was imported before main (EBUSY)");
	tap_is_str(r.err, "", "preloaded: nothing on stderr");

	run(&r, argv[3], (const char *const[]){preload, sock_env, "MMN_LIBFABRIC=0", NULL});
	tap_is_str(r.out, "import=0\n", "MMN_LIBFABRIC=0: no import");
	tap_is_str(r.err, "", "MMN_LIBFABRIC=0: nothing on stderr");

	run(&r, argv[3], (const char *const[]){preload, "MMN_SOCKET=/nonexistent/mmnd.sock", NULL});
	tap_is_str(r.out, "import=0\n", "no mmnd: libfabric keeps its monitors");
	tap_is_int(lines_from_us(r.err), 1, "no mmnd: one line on stderr");
	tap_ok(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "no mmnd: the program ran to its end");

	run(&r, argv[3], (const char *const[]){preload, sock_env, "MMN_LIBFABRIC_MAX_SUBS=x", NULL});
	tap_is_str(r.out, "import=0\n", "bad MMN_LIBFABRIC_MAX_SUBS: no import");
	tap_is_int(lines_from_us(r.err), 1, "bad MMN_LIBFABRIC_MAX_SUBS: one line on stderr");

	run(&r, argv[3], (const char *const[]){preload, sock_env, "MMN_LIBFABRIC_MAX_SUBS=16", NULL});
	tap_is_str(r.out, "import=-16\n", "MMN_LIBFABRIC_MAX_SUBS=16: imported");

	mmnd_run_fini(&d);
	return tap_done();
}
