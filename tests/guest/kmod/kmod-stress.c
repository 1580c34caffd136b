// SPDX-License-Identifier: GPL-2.0
/*
 * Stress: targets with 4 threads each munmap/mmap, mprotect, madvise and
 * fault in their subscribed range while the driver acks every blocking
 * event, churns extra subscriptions and replaces targets as they exit.
 * Afterwards: counters consistent, nothing left subscribed, and after
 * rmmod the kmalloc slabs are back to their baseline.
 *
 * usage: kmod-stress [SECONDS [MODULE.ko]]  (with MODULE.ko the test loads
 * and unloads it itself, to measure the slab baseline around it)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt.h"
#include "lib/churn.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE
#define NT 3		/* targets at a time */
#define NPAGES 64
#define NCHURN 8

/* A target of target.h, subscribed by the driver, with its churned subscriptions. */
struct stressed {
	struct target t; /* t.pid 0: none (gone, or not started) */
	uint32_t base_id;
	uint32_t churn[NCHURN];
	int nchurn;
};

static struct drv *d;
static unsigned int seed = 1;
static long bad_acks, bad_subs, releases, started, exited;

struct thr {
	char *base;
	int64_t end;
	unsigned int seed;
};

static void *worker(void *arg)
{
	struct thr *t = arg;

	while ((int64_t)mono_ns() < t->end) {
		char *p = t->base + (rand_r(&t->seed) % NPAGES) * P;

		churn_page(p, P, (unsigned)rand_r(&t->seed));
	}
	return NULL;
}

/* The target: once subscribed ("g"), 4 threads churn its pages for 1-4 s. */
static void target_main(int cmd, int rep, char *base, size_t len)
{
	int life_ms = 1000 + rand_r(&seed) % 3000;
	pthread_t th[4];
	struct thr a[4];
	char c;

	(void)rep;
	(void)len;
	if (read(cmd, &c, 1) != 1)
		_exit(1);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thr){ base, (int64_t)mono_ns() + life_ms * 1000000LL,
				     (unsigned int)getpid() * 4 + i };
		pthread_create(&th[i], NULL, worker, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
}

static void start(struct stressed *s)
{
	struct target *t = &s->t;

	memset(s, 0, sizeof(*s));
	if (target_spawn(t, NPAGES * P, TARGET_POPULATE | TARGET_CLOSE_FDS, target_main)) {
		bad_subs++;
		if (t->pid > 0) {
			close(t->cmd);
			close(t->rep);
		}
		t->pid = 0;
		return;
	}
	if (drv_subscribe(d, t->pid, t->addr, NPAGES * P, MMN_SUB_F_BLOCKING, 2000, &s->base_id))
		bad_subs++;
	if (write(t->cmd, "g", 1) != 1)
		bad_subs++;
	started++;
	close(t->cmd);
	close(t->rep);
}

static void forget(struct stressed *t)
{
	drv_unsubscribe(d, t->base_id);
	for (int i = 0; i < t->nchurn; i++)
		drv_unsubscribe(d, t->churn[i]);
	t->t.pid = 0;
}

static void churn(struct stressed *t)
{
	if (!t->t.pid)
		return;
	if (t->nchurn < NCHURN && rand_r(&seed) % 2) {
		uint64_t first = rand_r(&seed) % NPAGES, n = 1 + rand_r(&seed) % (NPAGES - first);
		uint32_t flags = rand_r(&seed) % 2 ? MMN_SUB_F_BLOCKING : 0;
		int r = drv_subscribe(d, t->t.pid, t->t.addr + first * P, n * P, flags, 2000,
				      &t->churn[t->nchurn]);

		if (!r)
			t->nchurn++;
		else if (r != -ESRCH)
			bad_subs++;
	} else if (t->nchurn) {
		int i = rand_r(&seed) % t->nchurn;

		if (drv_unsubscribe(d, t->churn[i]))
			bad_subs++;
		t->churn[i] = t->churn[--t->nchurn];
	}
}

static void handle(const struct drv_ev *ev)
{
	if (ev->cmd == MMN_CMD_INVALIDATE && (ev->flags & MMN_EV_F_NEEDS_ACK)) {
		int r = drv_ack(d, ev->seq);

		if (r && r != -ENOENT)
			bad_acks++;
	} else if (ev->cmd == MMN_CMD_RELEASE) {
		releases++;
	}
}

static long slab_bytes(void)
{
	char line[512], name[64];
	long total = 0, active, num, size;
	FILE *f = fopen("/proc/slabinfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %ld %ld %ld", name, &active, &num, &size) != 4)
			continue;
		if (!strncmp(name, "kmalloc-", 8))
			total += active * size;
	}
	fclose(f);
	return total;
}

/* Until @secs have passed: ack, churn, replace the targets that exited. */
static void run(struct stressed *t, int secs)
{
	int64_t end = (int64_t)mono_ns() + secs * 1000000000LL;
	int i;

	for (i = 0; i < NT; i++)
		start(&t[i]);
	while ((int64_t)mono_ns() < end) {
		struct drv_ev ev;
		int status;

		while (drv_next(d, &ev, 2) == 1)
			handle(&ev);
		churn(&t[rand_r(&seed) % NT]);
		for (i = 0; i < NT; i++) {
			if (t[i].t.pid && waitpid(t[i].t.pid, &status, WNOHANG) == t[i].t.pid) {
				exited++;
				forget(&t[i]);
				start(&t[i]);
			}
		}
	}
}

/* SIGKILLs the targets left, then waits until every INVALIDATE has its END. */
static void stop(struct stressed *t, uint64_t st[MMN_STATS_A_MAX + 1])
{
	int i;

	for (i = 0; i < NT; i++) {
		if (!t[i].t.pid)
			continue;
		kill(t[i].t.pid, SIGKILL);
		/* its threads may wait for our ACK: keep acking until it is gone */
		while (waitpid(t[i].t.pid, NULL, WNOHANG) != t[i].t.pid) {
			struct drv_ev ev;

			if (drv_next(d, &ev, 10) == 1)
				handle(&ev);
		}
		forget(&t[i]);
	}
	/* every INVALIDATE_END goes out once its invalidation is over */
	for (i = 0; i < 500; i++) {
		struct drv_ev ev;

		tap_require(drv_stats(d, st) == 0);
		if (st[MMN_STATS_A_ENDS] == st[MMN_STATS_A_EVENTS])
			break;
		drv_next(d, &ev, 10);
	}
}

static void check_stats(const uint64_t st[MMN_STATS_A_MAX + 1])
{
	tap_diag("%ld targets, %llu events, %llu waits, %llu acks, %llu timeouts, %llu releases, "
		 "%llu refused, %llu self skips", started,
		 (unsigned long long)st[MMN_STATS_A_EVENTS], (unsigned long long)st[MMN_STATS_A_WAITS],
		 (unsigned long long)st[MMN_STATS_A_ACKS], (unsigned long long)st[MMN_STATS_A_TIMEOUTS],
		 (unsigned long long)st[MMN_STATS_A_RELEASES],
		 (unsigned long long)st[MMN_STATS_A_NONBLOCK_REFUSED],
		 (unsigned long long)st[MMN_STATS_A_SELF_SKIPS]);
	tap_ok(started >= NT + 2, "targets came and went (%ld started, %ld exited)", started, exited);
	tap_ok(st[MMN_STATS_A_EVENTS] > 1000, "many events");
	tap_ok(st[MMN_STATS_A_WAITS] > 100, "many blocking waits");
	tap_is_int(bad_subs, 0, "every SUBSCRIBE/UNSUBSCRIBE succeeded (or ESRCH: target gone)");
	tap_is_int(bad_acks, 0, "every ACK accepted or stale");
	tap_is_int(st[MMN_STATS_A_SEND_FAILS], 0, "no event lost");
	tap_is_int(st[MMN_STATS_A_TIMEOUTS], 0, "no ack timeout (the driver always acked)");
	tap_is_int(st[MMN_STATS_A_ENDS], st[MMN_STATS_A_EVENTS], "one END per INVALIDATE");
	tap_ok(st[MMN_STATS_A_ACKS] + st[MMN_STATS_A_TIMEOUTS] <= st[MMN_STATS_A_WAITS],
	       "acks + timeouts <= waits");
	tap_ok(st[MMN_STATS_A_WAITS] - st[MMN_STATS_A_ACKS] < st[MMN_STATS_A_WAITS] / 10 + 10,
	       "nearly every wait ended by its ACK (others: target killed/unsubscribed)");
	tap_ok(st[MMN_STATS_A_RELEASES] >= (uint64_t)exited, "a RELEASE per exited target");
	tap_is_int(st[MMN_STATS_A_SUBS], 0, "no subscription left");
}

/* insmod @ko; the kmalloc slab bytes before it. */
static long load(const char *ko)
{
	char cmd[512];
	long slab0;

	knob_write("/proc/sys/vm/drop_caches", "3");
	slab0 = slab_bytes();
	snprintf(cmd, sizeof(cmd), "insmod %s", ko);
	tap_require(system(cmd) == 0);
	return slab0;
}

/* rmmod; the kmalloc slabs are back to @slab0. */
static void unload(long slab0)
{
	long slab1;

	tap_is_int(system("rmmod mmn"), 0, "rmmod");
	tap_ok(access("/sys/module/mmn", F_OK) != 0, "module gone");
	knob_write("/proc/sys/vm/drop_caches", "3");
	slab1 = slab_bytes();
	tap_diag("kmalloc slabs: %ld kB before insmod, %ld kB after rmmod", slab0 / 1024,
		 slab1 / 1024);
	tap_ok(slab1 - slab0 < 512 * 1024, "kmalloc slabs back to baseline (+%ld kB)",
	       (slab1 - slab0) / 1024);
}

int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 60;
	const char *ko = argc > 2 ? argv[2] : NULL;
	struct stressed t[NT];
	uint64_t st[MMN_STATS_A_MAX + 1];
	struct drv_sub subs[4];
	long slab0 = -1;

	if (ko)
		slab0 = load(ko);
	d = kt_bind(2000);
	tap_require(d);
	run(t, secs);
	stop(t, st);
	check_stats(st);
	tap_is_int(drv_subs(d, subs, 4), 0, "GET_SUBS empty");
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	if (ko)
		unload(slab0);
	return tap_done();
}
