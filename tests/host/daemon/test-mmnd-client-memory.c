/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a connection costs mmnd in memory: mmnd locks its memory, and each
 * client's sequence and waiter pages are sized for max-subs slots (9 MiB at
 * the default), so locking them when they are mapped rather than when a
 * slot is first used made every idle connection cost mmnd 9 MiB of locked
 * RAM (1,024 clients, the default limit: 9 GiB).  Here 16 clients connect
 * and each subscribes one range: mmnd's RSS may grow by at most
 * PER_CLIENT_KB per client.
 *
 *   usage: test-mmnd-client-memory MMND
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "mmnd-run.h"
#include "procstat.h"
#include "tap.h"

#define NCLIENTS      16
#define PER_CLIENT_KB 256 /* a client's structures and the slot pages it uses, with room */
#define READY_MS      20000

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	return 0;
}

int main(int argc, char **argv)
{
	const struct mmn_sub_opts o = {
		.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_invalidate};
	struct mmn_client *c[NCLIENTS];
	struct mmnd_run m;
	long rss0, rss1, lck;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char *buf;
	int ok = 0;

	if (argc < 2)
		tap_skip_all("usage: test-mmnd-client-memory MMND");
	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd(UFFD_USER_MODE_ONLY) is not available here");
	buf = mmap(NULL, NCLIENTS * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(buf != MAP_FAILED);
	tap_require(mmnd_run_init(&m, argv[1]) == 0);
	tap_require(mmnd_run_start(&m, NULL, READY_MS) == 0);
	lck = procstat_status_kb(m.pid, "VmLck");
	tap_diag("mmnd locks %ld KiB at start%s", lck, lck > 0 ? "" : " (no lock here: the check is weaker)");
	/* One client first, so that lazily built structures are not counted. */
	tap_require(mmn_connect(m.sock, &c[0]) == 0);
	mmn_disconnect(c[0]);
	rss0 = procstat_rss_kb(m.pid);
	for (int i = 0; i < NCLIENTS; i++) {
		struct mmn_sub *sub;

		ok += mmn_connect(m.sock, &c[i]) == 0 &&
		      mmn_subscribe(c[i], 0, (uintptr_t)buf + (size_t)i * page, page, &o, &sub) == 0;
	}
	tap_ok(ok == NCLIENTS, "%d clients connected and subscribed", ok);
	rss1 = procstat_rss_kb(m.pid);
	tap_ok(rss0 > 0 && rss1 > 0 && rss1 - rss0 <= (long)NCLIENTS * PER_CLIENT_KB,
	       "mmnd's RSS grew %ld KiB for %d clients (at most %d KiB each): %ld -> %ld KiB", rss1 - rss0,
	       NCLIENTS, PER_CLIENT_KB, rss0, rss1);
	tap_diag("RssShmem %ld KiB, VmLck %ld KiB with %d clients", procstat_status_kb(m.pid, "RssShmem"),
		 procstat_status_kb(m.pid, "VmLck"), NCLIENTS);
	for (int i = 0; i < NCLIENTS; i++)
		mmn_disconnect(c[i]);
	tap_ok(mmnd_run_kill(&m, SIGTERM, 10000) == 0, "mmnd exits cleanly on SIGTERM");
	mmnd_run_fini(&m);
	munmap(buf, NCLIENTS * page);
	return tap_done();
}
