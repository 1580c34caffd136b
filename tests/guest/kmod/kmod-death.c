// SPDX-License-Identifier: GPL-2.0
/*
 * Daemon death: SIGKILL the bound driver while a target's munmap waits for
 * its ACK.  The munmap returns promptly (NETLINK_URELEASE), every
 * subscription is gone (a new driver binds and GET_SUBS is empty), and
 * (with run-guest --rmmod) the module unloads.  With "rmmod" as argument the
 * module itself is removed while the waiter is in flight.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt.h"
#include "tap.h"

#define P KT_PAGE
#define MS 1000000LL

/* The doomed driver: bind, subscribe, report each INVALIDATE, never ack. */
static void doomed(pid_t target, uint64_t base, int wfd)
{
	struct drv *d = drv_open();
	struct drv_ev ev;
	uint32_t id;
	char c = 'R';

	if (!d || drv_bind(d, 5000) ||
	    drv_subscribe(d, target, base, 4 * P, MMN_SUB_F_BLOCKING, 8000, &id))
		_exit(2);
	if (write(wfd, &c, 1) != 1)
		_exit(3);
	for (;;) {
		if (drv_next(d, &ev, 60000) != 1)
			_exit(4);
		if (ev.cmd == MMN_CMD_INVALIDATE) {
			c = 'I';
			if (write(wfd, &c, 1) != 1)
				_exit(5);
		}
	}
}

int main(int argc, char **argv)
{
	bool do_rmmod = argc > 1 && !strcmp(argv[1], "rmmod");
	struct target t;
	struct target_res r;
	struct drv *probe;
	int p[2], st;
	pid_t dpid;
	char c;
	int64_t t_kill;

	probe = drv_open();
	if (!probe)
		tap_skip_all("mmn.ko not loaded (run in the guest)");
	drv_close(probe);

	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, 8 * P, 0, &r) == 0);
	tap_require(pipe(p) == 0);
	dpid = fork();
	if (dpid == 0) {
		close(p[0]);
		doomed(t.pid, r.val, p[1]);
	}
	tap_require(dpid > 0);
	close(p[1]);
	tap_is_int(read(p[0], &c, 1), 1, "driver bound and subscribed");
	tap_is_int(c, 'R', "driver ready");
	target_op_send(&t, T_MUNMAP, r.val, 4 * P, 0);
	tap_is_int(read(p[0], &c, 1), 1, "driver got the INVALIDATE");
	tap_is_int(c, 'I', "INVALIDATE");
	tap_is_int(target_op_recv(&t, &r, 200), 0, "munmap waits for the ACK");

	t_kill = (int64_t)mono_ns();
	if (do_rmmod) {
		/* the doomed driver stays alive and bound: remove the module under it */
		tap_is_int(system("rmmod mmn"), 0, "rmmod with a bound daemon and a waiter in flight");
	} else {
		kill(dpid, SIGKILL);
	}
	tap_is_int(target_op_recv(&t, &r, 5000), 1, "munmap returned");
	tap_ok(r.t1 - t_kill < 4000 * MS, "promptly after the daemon died (%lld ms, timeout 8000)",
	       (long long)(r.t1 - t_kill) / MS);
	tap_is_int(r.ret, 0, "munmap succeeded");
	if (do_rmmod) {
		kill(dpid, SIGKILL);
		waitpid(dpid, &st, 0);
		tap_ok(drv_open() == NULL, "family gone after rmmod");
		target_op_stop(&t);
		return tap_done();
	}
	tap_is_int(waitpid(dpid, &st, 0), dpid, "driver reaped");
	tap_ok(WIFSIGNALED(st), "driver was killed (not an early exit: %d)",
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	struct drv *d = kt_bind(2000);
	struct drv_sub subs[4];

	tap_ok(d != NULL, "a new driver can bind");
	if (d) {
		tap_is_int(drv_subs(d, subs, 4), 0, "GET_SUBS is empty");
		/* removal runs on a workqueue: the count drops as soon as DYING */
		tap_is_int(kt_stat(d, MMN_STATS_A_SUBS), 0, "no subscription counted");
		tap_is_int(kt_op(d, &t, T_MUNMAP, 0, 0, 0, true, NULL, &r), -1,
			   "target still alive and responsive");
		struct drv_ev ev;

		tap_is_int(drv_next(d, &ev, 0), 0, "no event for the old subscription");
		drv_unbind(d);
		drv_close(d);
	}
	target_op_stop(&t);
	return tap_done();
}
