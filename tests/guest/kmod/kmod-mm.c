// SPDX-License-Identifier: GPL-2.0
/*
 * Core-mm sources of invalidations beyond the syscalls: THP split on a
 * partial unmap (PMD-wide range, clipped to the subscription), KSM merging
 * (CLEAR from ksmd), and, with "numa" on a two-node guest, migration by
 * move_pages (CLEAR from try_to_migrate_one).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kt.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE
#define HUGE (2UL << 20)

static struct drv *d;

static long smaps_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			kb = atol(line + strlen(field));
	fclose(f);
	return kb;
}

static void t_thp(void)
{
	struct target t;
	struct target_res r;
	struct kt_evs evs = { 0 };
	uint64_t base;
	uint32_t id;
	int i, n = 0, good = 0;

	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, HUGE, 1, &r) == 0);
	base = r.val;
	if (smaps_kb(t.pid, "AnonHugePages:") < 2048) {
		tap_diag("no THP in the target (AnonHugePages %ld kB)", smaps_kb(t.pid, "AnonHugePages:"));
		tap_ok(0, "THP: target got a huge page");
		target_op_stop(&t);
		return;
	}
	tap_ok(1, "THP: target got a huge page");
	tap_is_int(drv_subscribe(d, t.pid, base + HUGE / 2, P, 0, 0, &id), 0,
		   "THP: subscribe one 4 KiB page in the middle");
	tap_is_int(kt_op(d, &t, T_MUNMAP, base + 2 * P, P, 0, true, &evs, NULL), 0,
		   "THP: munmap another 4 KiB page of the same huge page");
	for (i = 0; i < evs.n; i++) {
		const struct drv_ev *e = &evs.ev[i];

		if (e->cmd != MMN_CMD_INVALIDATE)
			continue;
		n++;
		tap_diag("event %u range %#llx+%#llx", e->event,
			 (unsigned long long)(e->range_start - base),
			 (unsigned long long)(e->range_end - e->range_start));
		good += e->event == MMN_EVENT_CLEAR && e->range_start == base &&
			e->range_end == base + HUGE && e->nsubs == 1 &&
			e->subs[0].start == base + HUGE / 2 &&
			e->subs[0].end == base + HUGE / 2 + P;
	}
	tap_ok(n >= 1, "THP: the split is reported (%d INVALIDATE)", n);
	tap_is_int(good, n, "THP: each is CLEAR over the whole PMD, clipped to our page");
	drv_unsubscribe(d, id);
	target_op_stop(&t);
}

static void t_ksm(void)
{
	struct target t;
	struct target_res r;
	struct drv_ev ev;
	uint64_t base;
	uint32_t id;
	int got = 0;

	if (knob_write("/sys/kernel/mm/ksm/pages_to_scan", "10000") ||
	    knob_write("/sys/kernel/mm/ksm/sleep_millisecs", "10") ||
	    knob_write("/sys/kernel/mm/ksm/run", "1")) {
		tap_ok(0, "KSM: cannot start ksmd");
		return;
	}
	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, 64 * P, 0, &r) == 0);
	base = r.val;
	tap_is_int(drv_subscribe(d, t.pid, base, 64 * P, 0, 0, &id), 0, "KSM: subscribe");
	tap_is_int(target_op_do(&t, T_MERGEABLE, base, 64 * P, 0, &r), 0,
		   "KSM: identical pages, MADV_MERGEABLE");
	while (!got && drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 30000) == 1)
		got = ev.event == MMN_EVENT_CLEAR && ev.subs[0].id == id;
	tap_ok(got, "KSM: ksmd's write-protect/merge reported as CLEAR");
	if (got)
		tap_ok(ev.subs[0].start >= base && ev.subs[0].end <= base + 64 * P &&
		       ev.subs[0].end > ev.subs[0].start, "KSM: clipped inside the subscription");
	knob_write("/sys/kernel/mm/ksm/run", "2");
	drv_unsubscribe(d, id);
	target_op_stop(&t);
}

static void t_migrate(void)
{
	struct target t;
	struct target_res r;
	struct kt_evs evs = { 0 };
	uint64_t base;
	uint32_t id;
	int i, n = 0;

	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, 16 * P, 0, &r) == 0);
	base = r.val;
	tap_is_int(drv_subscribe(d, t.pid, base + 4 * P, 4 * P, 0, 0, &id), 0, "migrate: subscribe");
	/* to node 1, then back to 0: at least one of them moves the pages */
	for (int node = 1; node >= 0; node--) {
		tap_is_int(kt_op(d, &t, T_MOVE_PAGES, base, 16 * P, node, true, &evs, &r), 0,
			   "migrate: move_pages");
		tap_is_int(r.val, node, "migrate: first page now on the node");
	}
	for (i = 0; i < evs.n; i++) {
		const struct drv_ev *e = &evs.ev[i];

		if (e->cmd != MMN_CMD_INVALIDATE || e->subs[0].id != id)
			continue;
		n += e->event == MMN_EVENT_CLEAR && e->subs[0].start >= base + 4 * P &&
		     e->subs[0].end <= base + 8 * P;
	}
	tap_ok(n >= 4, "migrate: CLEAR for the subscribed pages (%d events)", n);
	drv_unsubscribe(d, id);
	target_op_stop(&t);
}

int main(int argc, char **argv)
{
	bool numa = argc > 1 && !strcmp(argv[1], "numa");

	if (numa && access("/sys/devices/system/node/node1", F_OK))
		tap_skip_all("one NUMA node (run-guest --numa for two)");
	d = kt_bind(2000);
	tap_require(d);
	if (numa) {
		t_migrate();
	} else {
		t_thp();
		t_ksm();
	}
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
