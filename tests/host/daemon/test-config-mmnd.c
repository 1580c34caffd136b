/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd --config=FILE on a private dbus-daemon: the file's limits are in
 * force at start (the command line winning over it); after the file
 * changes, `mmnctl reload` applies the live keys, keeps the restart-only
 * ones (the source) and logs that they wait for a restart; a bad file is
 * refused with org.mmn.Broker1.Error.ReloadFailed naming FILE:LINE and the
 * key, and every setting in force stays.
 *
 *   test-config-mmnd MMND MMNCTL
 */
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-bus.h>

#include <fcntl.h>
#include <sys/wait.h>
#include "tap.h"
#include "bus-harness.h"

#define BUS_NAME  "org.mmn.Broker1"
#define BUS_PATH  "/org/mmn/Broker1"
#define BUS_IFACE "org.mmn.Broker1.Manager"

/* Like tap_require, but silent when it holds: setup steps are not test points. */
#define req(cond)                                                                                            \
	do {                                                                                                 \
		if (!(cond))                                                                                 \
			tap_require(cond);                                                                   \
	} while (0)

static struct private_bus pb;
static char conf[128], sock[128], logpath[128];
static pid_t mmnd_pid;

static void write_conf(const char *text)
{
	FILE *f = fopen(conf, "w");

	req(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/*
 * mmnd --config=FILE with no --source: the source comes from the file (a
 * restart-only key the reload then changes).  0 once it wrote READY=1.
 */
static int start_mmnd(const char *exe)
{
	char a_bus[300], a_conf[160], a_sock[160], buf[16] = "";
	int rp[2], logfd;
	struct pollfd pf;

	snprintf(a_bus, sizeof(a_bus), "--bus=%s", pb.address);
	snprintf(a_conf, sizeof(a_conf), "--config=%s", conf);
	snprintf(a_sock, sizeof(a_sock), "--socket=%s", sock);
	logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	req(logfd >= 0 && pipe(rp) == 0);
	fflush(stdout);
	mmnd_pid = fork();
	req(mmnd_pid >= 0);
	if (mmnd_pid == 0) {
		dup2(logfd, 1);
		dup2(logfd, 2);
		dup2(rp[1], 3);
		execl(exe, "mmnd", a_bus, a_conf, a_sock, "--ready-fd=3", "--max-subs=77", "--log-level=info",
		      (char *)NULL);
		_exit(127);
	}
	close(rp[1]);
	close(logfd);
	pf = (struct pollfd){.fd = rp[0], .events = POLLIN};
	if (poll(&pf, 1, 20000) <= 0 || read(rp[0], buf, sizeof(buf) - 1) <= 0 || !strstr(buf, "READY=1")) {
		close(rp[0]);
		return -EIO;
	}
	close(rp[0]);
	return 0;
}

static uint32_t prop(sd_bus *b, const char *name)
{
	uint32_t v = 0;

	if (sd_bus_get_property_trivial(b, BUS_NAME, BUS_PATH, BUS_IFACE, name, NULL, 'u', &v) < 0)
		return 0;
	return v;
}

static bool prop_str(sd_bus *b, const char *name, const char *want)
{
	char *v = NULL;
	bool ok;

	if (sd_bus_get_property_string(b, BUS_NAME, BUS_PATH, BUS_IFACE, name, NULL, &v) < 0)
		return false;
	ok = strcmp(v, want) == 0;
	free(v);
	return ok;
}

/* Run `MMNCTL --bus=ADDRESS reload`; its exit status, its stderr in @err. */
static int mmnctl_reload(const char *mmnctl, char *err, size_t size)
{
	char a_bus[300];
	int ep[2], st;
	size_t n = 0;
	ssize_t k;
	pid_t pid;

	snprintf(a_bus, sizeof(a_bus), "--bus=%s", pb.address);
	req(pipe(ep) == 0);
	fflush(stdout);
	pid = fork();
	req(pid >= 0);
	if (pid == 0) {
		dup2(ep[1], 2);
		execl(mmnctl, "mmnctl", a_bus, "reload", (char *)NULL);
		_exit(127);
	}
	close(ep[1]);
	while (n + 1 < size && (k = read(ep[0], err + n, size - 1 - n)) > 0)
		n += (size_t)k;
	err[n] = 0;
	close(ep[0]);
	req(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The whole of mmnd's log so far. */
static void read_log(char *buf, size_t size)
{
	FILE *f = fopen(logpath, "r");
	size_t n = f ? fread(buf, 1, size - 1, f) : 0;

	buf[n] = 0;
	if (f)
		fclose(f);
}

static bool can_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	if (strlen(path) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void test_bad_file(sd_bus *b, const char *mmnctl)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	char err[1024], line2[160];
	int r;

	write_conf("max-clients=300\nmax-queued=lots\nhello-timeout-ms=7000\n");
	r = mmnctl_reload(mmnctl, err, sizeof(err));
	snprintf(line2, sizeof(line2), "%s:2: max-queued", conf);
	tap_ok(r == 1 && strstr(err, line2), "bad file: mmnctl reload exits 1 naming FILE:2 and the key: %s",
	       err);
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "Reload", &e, NULL, NULL);
	tap_ok(r < 0 && sd_bus_error_has_name(&e, "org.mmn.Broker1.Error.ReloadFailed") && e.message &&
		       strstr(e.message, line2),
	       "bad file: Reload fails with ReloadFailed (%s: %s)", e.name ? e.name : "-",
	       e.message ? e.message : "-");
	sd_bus_error_free(&e);
	tap_is_int(prop(b, "MaxClients"), 200,
		   "bad file: MaxClients stays 200 (its good line 1 is not applied)");
	tap_is_int(prop(b, "MaxQueuedEvents"), 60, "bad file: MaxQueuedEvents stays 60");
	tap_is_int(prop(b, "HelloTimeoutMSec"), 5000, "bad file: HelloTimeoutMSec stays 5000");

	write_conf("max-clients=200\nmax-queued=60\nack-timeout-ms=1600\n");
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "Reload", &e, NULL, NULL);
	tap_ok(r < 0 && e.message && strstr(e.message, "must not exceed ack-cap-ms"),
	       "bad file: a deadline above the cap is refused too (%s)", e.message ? e.message : "-");
	sd_bus_error_free(&e);
	tap_is_int(prop(b, "DefaultAckTimeoutMSec"), 1000, "bad file: DefaultAckTimeoutMSec stays 1000");

	unlink(conf);
	r = sd_bus_call_method(b, BUS_NAME, BUS_PATH, BUS_IFACE, "Reload", &e, NULL, NULL);
	tap_ok(r < 0 && e.message && strstr(e.message, conf) && strstr(e.message, "No such file"),
	       "bad file: a --config file that is gone is refused (%s)", e.message ? e.message : "-");
	sd_bus_error_free(&e);
	tap_is_int(prop(b, "MaxClients"), 200, "bad file: MaxClients stays 200");
}

int main(int argc, char **argv)
{
	char err[1024], *log;
	sd_bus *b = NULL;
	int r, st;

	if (argc != 3) {
		fprintf(stderr, "usage: test-config-mmnd MMND MMNCTL\n");
		return 2;
	}
	if (geteuid() != 0) {
		printf("1..0 # SKIP Reload needs root\n");
		return 0;
	}
	private_bus_start_tap(&pb);
	snprintf(conf, sizeof(conf), "%s/mmnd.conf", pb.dir);
	snprintf(sock, sizeof(sock), "%s/mmnd.sock", pb.dir);
	snprintf(logpath, sizeof(logpath), "%s/mmnd.log", pb.dir);
	write_conf("# test\nsource=test\nmax-clients = 100\nmax-queued=50\nmax-subs=5\n");
	tap_ok(start_mmnd(argv[1]) == 0, "mmnd starts with --config");
	req(sd_bus_new(&b) >= 0 && sd_bus_set_address(b, pb.address) >= 0 &&
	    sd_bus_set_bus_client(b, 1) >= 0 && sd_bus_start(b) >= 0);
	tap_is_int(prop(b, "MaxClients"), 100, "start: MaxClients from the file");
	tap_is_int(prop(b, "MaxQueuedEvents"), 50, "start: MaxQueuedEvents from the file");
	tap_is_int(prop(b, "MaxSubscriptionsPerClient"), 77, "start: the command line wins over the file");

	write_conf("max-clients=200\nmax-queued=60\nmax-subs=6\nsource=uffd\n");
	r = mmnctl_reload(argv[2], err, sizeof(err));
	tap_ok(r == 0, "mmnctl reload succeeds (exit %d%s%s)", r, err[0] ? ": " : "", err);
	tap_is_int(prop(b, "MaxClients"), 200, "reload: MaxClients is the file's new value");
	tap_is_int(prop(b, "MaxQueuedEvents"), 60, "reload: MaxQueuedEvents is the file's new value");
	tap_is_int(prop(b, "MaxSubscriptionsPerClient"), 77, "reload: the command line still wins");
	tap_ok(can_connect(sock), "reload: mmnd still serves on its socket");
	tap_ok(prop_str(b, "Source", "test"), "reload: Source is still test (source is restart-only)");
	log = malloc(65536);
	req(log);
	read_log(log, 65536);
	tap_ok(strstr(log, "source changed to uffd; it takes effect when mmnd restarts (still test)") != NULL,
	       "reload: the log says the source waits for a restart");
	if (!strstr(log, "takes effect when mmnd restarts"))
		tap_diag("mmnd's log: %s", log);

	test_bad_file(b, argv[2]);

	read_log(log, 65536);
	tap_ok(strstr(log, "Reload refused") != NULL, "the log says the reload was refused");
	free(log);
	sd_bus_flush_close_unref(b);
	kill(mmnd_pid, SIGTERM);
	tap_ok(waitpid(mmnd_pid, &st, 0) == mmnd_pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "mmnd exits 0 on SIGTERM");
	private_bus_stop(&pb);
	return tap_done();
}
