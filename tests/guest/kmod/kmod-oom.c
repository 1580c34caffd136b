// SPDX-License-Identifier: GPL-2.0
/*
 * Non-blockable: the OOM reaper's invalidation of a subscribed victim in a
 * small memory cgroup is refused (MMN_EV_F_REFUSED, the reaper retries)
 * while a BLOCKING subscription covers the memory, and succeeds once the
 * daemon clears BLOCKING with SET_FLAGS.
 *
 * The victim must outlive the OOM kill for the reaper to run (it waits 2 s
 * for the victim to exit on its own): a second thread of the victim sleeps
 * in an acked invalidation (madvise of a shared mapping, which the reaper
 * skips) until the test acks it at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt.h"
#include "lib/klog.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE
#define CG "/sys/fs/cgroup/mmn-oom"
#define R1 (8UL << 20)

struct addrs {
	uint64_t r1, r2;
};

static char *r2;

static void *blocker(void *arg)
{
	madvise(r2, P, MADV_DONTNEED);
	return NULL;
}

/* The victim: join the cgroup, map, report, then on command block + allocate. */
static void victim(int rfd, int wfd)
{
	struct addrs a;
	char c, buf[32];
	pthread_t th;
	int mfd;

	snprintf(buf, sizeof(buf), "%d", getpid());
	if (knob_write(CG "/cgroup.procs", buf))
		_exit(10);
	a.r1 = (uint64_t)mmap(NULL, R1, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	mfd = memfd_create("mmn-oom", 0);
	if (mfd < 0 || ftruncate(mfd, P))
		_exit(11);
	r2 = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, mfd, 0);
	a.r2 = (uint64_t)r2;
	if (a.r1 == (uint64_t)MAP_FAILED || r2 == MAP_FAILED)
		_exit(12);
	memset((void *)a.r1, 1, R1);
	r2[0] = 1;
	if (write(wfd, &a, sizeof(a)) != sizeof(a) || read(rfd, &c, 1) != 1)
		_exit(13);
	/* mapped now: mmap() would need the mmap_lock the blocker holds */
	char *big = mmap(NULL, 256 << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (big == MAP_FAILED)
		_exit(15);
	pthread_create(&th, NULL, blocker, NULL);
	if (read(rfd, &c, 1) != 1)
		_exit(14);
	/* page faults only take mmap_lock for reading: the OOM kill comes here */
	memset(big, 2, 256 << 20);
	_exit(16);
}

int main(void)
{
	struct drv *d;
	struct drv_ev ev, block_ev;
	struct addrs a;
	int to[2], from[2], st, kfd, i;
	uint32_t id1, id2;
	uint64_t ref0;
	pid_t v;
	char needle[64];
	bool refused = false, after = false, reaped = false;

	d = kt_bind(2000);
	tap_require(d);
	if (system("mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup") ||
	    knob_write("/sys/fs/cgroup/cgroup.subtree_control", "+memory") ||
	    (mkdir(CG, 0755) && errno != EEXIST))
		tap_skip_all("no cgroup2 memory controller");
	tap_require(knob_write(CG "/memory.max", "48M") == 0);
	knob_write(CG "/memory.swap.max", "0");
	tap_require(knob_write("/sys/module/mmn/parameters/max_ack_timeout_ms", "10000") == 0);
	kfd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	lseek(kfd, 0, SEEK_END);
	ref0 = kt_stat(d, MMN_STATS_A_NONBLOCK_REFUSED);

	tap_require(pipe(to) == 0 && pipe(from) == 0);
	v = fork();
	if (v == 0) {
		close(drv_fd(d));
		victim(to[0], from[1]);
	}
	tap_require(v > 0);
	tap_require(read(from[0], &a, sizeof(a)) == sizeof(a));
	tap_is_int(drv_subscribe(d, v, a.r1, R1, MMN_SUB_F_BLOCKING, 10000, &id1), 0,
		   "BLOCKING subscription on the victim's anonymous memory");
	tap_is_int(drv_subscribe(d, v, a.r2, P, MMN_SUB_F_BLOCKING, 10000, &id2), 0,
		   "BLOCKING subscription on its shared page");
	tap_require(write(to[1], "g", 1) == 1);
	tap_is_int(drv_next_cmd(d, MMN_CMD_INVALIDATE, &block_ev, 5000), 1,
		   "victim's second thread waits in an invalidation");
	tap_is_int(block_ev.subs[0].id, id2, "on the shared page");
	tap_require(write(to[1], "a", 1) == 1);

	/* OOM kill, then after ~2 s the reaper tries, non-blockable */
	for (i = 0; i < 100 && !refused; i++) {
		if (drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 10000) != 1)
			break;
		tap_diag("event %u flags %#x sub %u range %#llx-%#llx", ev.event, ev.flags,
			 ev.subs[0].id, (unsigned long long)ev.range_start,
			 (unsigned long long)ev.range_end);
		if (!(ev.flags & MMN_EV_F_BLOCKABLE) && (ev.flags & MMN_EV_F_REFUSED))
			refused = ev.subs[0].id == id1;
	}
	tap_ok(refused, "the reaper's non-blockable invalidation is refused (REFUSED, not BLOCKABLE)");
	tap_is_int(ev.event, MMN_EVENT_UNMAP, "reaper event is UNMAP");
	tap_ok(kt_stat(d, MMN_STATS_A_NONBLOCK_REFUSED) > ref0, "NONBLOCK_REFUSED counted");

	tap_is_int(drv_set_flags(d, id1, 0), 0, "daemon clears BLOCKING (consumers dropped mappings)");
	for (i = 0; i < 100 && !after; i++) {
		if (drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 3000) != 1)
			break;
		if (!(ev.flags & MMN_EV_F_BLOCKABLE) && ev.subs[0].id == id1)
			after = !(ev.flags & MMN_EV_F_REFUSED);
	}
	tap_ok(after, "the reaper's retry is reported and not refused");
	snprintf(needle, sizeof(needle), "oom_reaper: reaped process %d", v);
	for (i = 0; i < 50 && !reaped; i++) {
		struct drv_ev e;

		reaped = klog_has(kfd, needle);
		if (!reaped)
			drv_next(d, &e, 100);	/* wait a little, events or not */
	}
	tap_ok(reaped, "kernel log: \"%s\"", needle);
	lseek(kfd, 0, SEEK_SET);
	tap_ok(!klog_has(kfd, "unable to reap"), "no \"oom_reaper: unable to reap\"");

	tap_is_int(drv_ack(d, block_ev.seq), 0, "ACK the second thread's invalidation");
	tap_is_int(waitpid(v, &st, 0), v, "victim reaped");
	tap_ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "victim was OOM-killed");
	drv_unsubscribe(d, id1);
	drv_unsubscribe(d, id2);
	knob_write("/sys/module/mmn/parameters/max_ack_timeout_ms", "2000");
	rmdir(CG);
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
