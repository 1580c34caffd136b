/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A private dbus-daemon for tests: its own config (any uid may connect, no
 * policy beyond that, like a session bus), its own socket in a temporary
 * directory, its address read from --print-address on a pipe.  Header-only;
 * each test program includes it once.
 */
#ifndef MMN_TESTS_BUS_HARNESS_H
#define MMN_TESTS_BUS_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

struct private_bus {
	char dir[64];
	char address[256];
	pid_t pid;
};

/* Read one line from @fd (blocking) into @buf, without the newline. */
static inline int read_line_fd(int fd, char *buf, size_t size)
{
	size_t n = 0;
	char c;

	while (n + 1 < size) {
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EPIPE;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return (int)n;
}

/*
 * Start dbus-daemon with @extra_policy (XML inserted into the config, or
 * NULL).  0, -ENOENT when dbus-daemon is not installed, or a negative errno.
 */
static inline int private_bus_start(struct private_bus *pb, const char *extra_policy)
{
	char cfg[128], fdarg[32];
	int fds[2];
	FILE *f;

	if (access("/usr/bin/dbus-daemon", X_OK) < 0)
		return -ENOENT;
	snprintf(pb->dir, sizeof(pb->dir), "/tmp/mmn-bus-XXXXXX");
	if (!mkdtemp(pb->dir))
		return -errno;
	/* Other uids (the unprivileged caller) must reach the socket. */
	chmod(pb->dir, 0755);
	snprintf(cfg, sizeof(cfg), "%s/bus.conf", pb->dir);
	f = fopen(cfg, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
		" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
		"<busconfig>\n"
		"  <type>session</type>\n"
		"  <listen>unix:path=%s/bus</listen>\n"
		"  <auth>EXTERNAL</auth>\n"
		"%s\n"
		"</busconfig>\n",
		pb->dir,
		extra_policy ? extra_policy
			     : "  <policy context=\"default\">\n"
			       "    <allow user=\"*\"/>\n"
			       "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
			       "    <allow eavesdrop=\"true\"/>\n"
			       "    <allow own=\"*\"/>\n"
			       "  </policy>");
	fclose(f);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pb->pid = fork();
	if (pb->pid < 0)
		return -errno;
	if (pb->pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDERR_FILENO);
		dup2(fds[1], 3);
		snprintf(fdarg, sizeof(fdarg), "--print-address=3");
		snprintf(cfg, sizeof(cfg), "--config-file=%s/bus.conf", pb->dir);
		execl("/usr/bin/dbus-daemon", "dbus-daemon", "--nofork", "--nopidfile", cfg, fdarg,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	if (read_line_fd(fds[0], pb->address, sizeof(pb->address)) <= 0) {
		close(fds[0]);
		return -EIO;
	}
	close(fds[0]);
	return 0;
}

/*
 * private_bus_start() in a TAP test: a skip plan and exit 0 when
 * dbus-daemon is not installed (not tap_skip_all(): meson 1.0 counts a TAP
 * exit 77 as an error), a bail-out on any other failure.
 */
static inline void private_bus_start_tap(struct private_bus *pb)
{
	int r = private_bus_start(pb, NULL);

	if (r == -ENOENT) {
		printf("1..0 # SKIP dbus-daemon is not installed\n");
		exit(0);
	}
	tap_require(r == 0);
}

static inline void private_bus_stop(struct private_bus *pb)
{
	char cmd[96];

	if (pb->pid > 0) {
		kill(pb->pid, SIGTERM);
		waitpid(pb->pid, NULL, 0);
		pb->pid = 0;
	}
	if (pb->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pb->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "# failed to remove %s\n", pb->dir);
	}
}

#endif
