/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/e2e's raw driver of mmn.ko (e2e-driver.h): tests/guest/kmod's drv,
 * one generic-netlink socket, each ACK a request answered by the kernel.
 */
#include <poll.h>
#include <unistd.h>

#include "e2e-driver.h"
#include "guest/kmod/drv.h"

void e2e_raw_driver(pid_t pid, uint64_t start, uint64_t len, int ready, int stop)
{
	struct drv *d = drv_open();
	struct pollfd p = {.fd = stop, .events = POLLIN};
	struct drv_ev ev;
	uint32_t id;

	if (!d || drv_bind(d, 5000) < 0 || drv_subscribe(d, pid, start, len, MMN_SUB_F_BLOCKING, 5000, &id) < 0)
		_exit(1);
	(void)!write(ready, "r", 1);
	while (poll(&p, 1, 0) == 0) {
		int r = drv_next(d, &ev, 100);

		if (r < 0)
			_exit(1);
		if (r == 1 && ev.cmd == MMN_CMD_INVALIDATE && (ev.flags & MMN_EV_F_NEEDS_ACK) && drv_ack(d, ev.seq) < 0)
			_exit(1);
	}
	drv_close(d);
	_exit(0);
}
