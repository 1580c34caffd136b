// SPDX-License-Identifier: GPL-2.0
/*
 * Every delivered INVALIDATE gets its INVALIDATE_END, even when the daemon's
 * receive queue is full at the moment the END is sent.
 *
 * The exact failing sequence: the INVALIDATE of a BLOCKING subscription is
 * delivered; the driver congests its own receive queue (a tiny buffer and
 * GET_STATS requests whose answers it does not read: a congested netlink
 * socket refuses everything until it has been emptied); it ACKs without
 * asking for an answer, so the munmap returns and the module's worker sends
 * the END into the congested queue (-EAGAIN).  The driver watches its
 * socket's drop counter (/proc/net/netlink) to know that the END was
 * refused, then empties the queue.  The END must still arrive, once: an END
 * given up on can never be replaced (a REVOKED does not close an event), and
 * mmnd would keep the event open until its last-resort timer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netlink.h>
#include <time.h>

#include <netlink/msg.h>

#include "kt.h"
#include "tap.h"

#define P KT_PAGE
#define MS 1000000LL

/* The port the kernel knows our socket by. */
static uint32_t port_of(struct drv *d)
{
	struct sockaddr_nl a = { .nl_family = AF_NETLINK };
	socklen_t l = sizeof(a);

	return getsockname(drv_fd(d), (struct sockaddr *)&a, &l) == 0 ? a.nl_pid : 0;
}

/* Our socket's Drops column in /proc/net/netlink; -1 if not found. */
static long long drops_of(uint32_t portid)
{
	FILE *f = fopen("/proc/net/netlink", "r");
	char line[512];
	long long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long drops, inode;
		unsigned int eth, pid, groups, rmem, wmem, dump, locks;

		/* the first column is a kernel pointer, maybe hidden: skipped */
		if (sscanf(line, "%*s %u %u %x %u %u %u %u %llu %llu", &eth, &pid, &groups, &rmem,
			   &wmem, &dump, &locks, &drops, &inode) == 9 &&
		    eth == 16 /* NETLINK_GENERIC */ && pid == portid) {
			v = (long long)drops;
			break;
		}
	}
	fclose(f);
	return v;
}

/* Send a request without waiting for (nor asking for) an answer. */
static int send_raw(struct drv *d, uint8_t cmd, uint64_t seq, bool answer)
{
	struct nl_msg *m = drv_msg(d, cmd);
	struct nlmsghdr *h;
	ssize_t n;

	if (!m)
		return -ENOMEM;
	if (cmd == MMN_CMD_ACK)
		nla_put_u64(m, MMN_A_SEQ, seq);
	h = nlmsg_hdr(m);
	if (!answer)
		h->nlmsg_flags &= ~NLM_F_ACK;
	h->nlmsg_seq = 0x7e57;
	h->nlmsg_pid = 0;
	n = send(drv_fd(d), h, h->nlmsg_len, 0);
	nlmsg_free(m);
	return n < 0 ? -errno : 0;
}

/* Wait, bounded, until our socket dropped more than @than messages. */
static long long wait_drops(uint32_t portid, long long than, int timeout_ms)
{
	int64_t deadline = (int64_t)mono_ns() + (int64_t)timeout_ms * MS;
	struct timespec ts = { 0, 5 * MS };
	long long v;

	while ((v = drops_of(portid)) >= 0 && v <= than && (int64_t)mono_ns() < deadline)
		nanosleep(&ts, NULL); /* polling a counter: nothing to wait on */
	return v;
}

int main(void)
{
	struct drv *d = kt_bind(5000);
	struct kt_evs evs = { 0 };
	struct drv_ev inv, ev;
	struct target_res r;
	struct target t;
	uint64_t base, f0;
	long long d0, d1;
	uint32_t b, port;
	int k, n, ends = 0, overrun = 0;

	tap_require(d);
	port = port_of(d);
	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, 4 * P, 0, &r) == 0);
	base = r.val;
	tap_is_int(drv_subscribe(d, t.pid, base, 4 * P, MMN_SUB_F_BLOCKING, 5000, &b), 0,
		   "BLOCKING subscription (5 s timeout)");
	tap_ok(drops_of(port) >= 0, "our socket is in /proc/net/netlink (drops %lld)", drops_of(port));
	f0 = kt_stat(d, MMN_STATS_A_SEND_FAILS);

	tap_require(target_op_send(&t, T_MUNMAP, base, P, 0) == 0);
	n = drv_next_cmd(d, MMN_CMD_INVALIDATE, &inv, 10000);
	tap_ok(n == 1 && (inv.flags & MMN_EV_F_NEEDS_ACK), "INVALIDATE delivered, the munmap waits");

	/* congest: one answer fills the tiny queue, the next ones are dropped */
	tap_is_int(drv_set_rcvbuf(d, 1), 0, "tiny receive buffer");
	d0 = drops_of(port);
	for (k = 0; k < 8; k++)
		send_raw(d, MMN_CMD_GET_STATS, 0, true);
	d1 = drops_of(port);
	tap_ok(d1 > d0, "the queue is congested (drops %lld -> %lld)", d0, d1);

	/* ACK without an answer: the munmap returns, the worker sends the END */
	tap_is_int(send_raw(d, MMN_CMD_ACK, inv.seq, false), 0, "ACK sent");
	n = target_op_recv(&t, &r, 10000);
	tap_ok(n == 1 && r.ret == 0, "the munmap returned");
	tap_ok(r.t1 - r.t0 < 4000 * MS, "released by the ACK, not the timeout (%lld ms)",
	       (long long)(r.t1 - r.t0) / MS);
	d0 = wait_drops(port, d1, 10000);
	tap_ok(d0 > d1, "the INVALIDATE_END was refused by the congested queue (drops %lld -> %lld)",
	       d1, d0);

	/* empty the queue: a congested socket accepts again once it is empty */
	for (k = 0; k < 100000; k++) {
		n = drv_next(d, &ev, 0);
		if (n == -ENOBUFS) {
			overrun = 1;
			continue;
		}
		if (n != 1)
			break;
		if (ev.cmd == MMN_CMD_INVALIDATE_END && ev.seq == inv.seq)
			ends++;
	}
	tap_ok(overrun, "the driver saw the overrun (ENOBUFS)");
	tap_require(drv_set_rcvbuf(d, 4 << 20) == 0);

	if (!ends && kt_wait_end(d, inv.seq, &evs, 3000))
		ends++;
	tap_ok(ends == 1, "the INVALIDATE_END of seq %" PRIu64 " arrived, once (%d)", inv.seq, ends);
	tap_ok(kt_stat(d, MMN_STATS_A_SEND_FAILS) > f0, "the refused send was counted (SEND_FAILS)");
	/* no duplicate: nothing more for that seq once the module settled */
	tap_ok(kt_settle(d), "every INVALIDATE has its END (EVENTS and ENDS agree)");

	tap_is_int(drv_unsubscribe(d, b), 0, "UNSUBSCRIBE");
	target_op_stop(&t);
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
