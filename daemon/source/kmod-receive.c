/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source's receive path: the socket's poll callback reads a
 * bounded number of datagrams, the idle callback drains what synchronous
 * requests kept in the backlog (in the kernel's order), and each message is
 * told apart: an answer to an asynchronous request (counted), the late answer
 * of an abandoned SUBSCRIBE, nlctrl's notice, or an event for kmod-event.c.
 *
 * Everything here runs on the loop thread (source.h); nothing is locked.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/genetlink.h>
#include <linux/mmn.h>
#include <linux/netlink.h>

#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "source/kmod-receive.h"

#include "log.h"
#include "source/kmod-channel.h"
#include "source/kmod-event.h"
#include "source/kmod-source.h"

static void handle_message(struct kmod_source *ks, struct nlmsghdr *nlh, uint64_t rx)
{
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(nlh);

		if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
			return;
		if (mmn__kmod_is_orphan(ks, nlh->nlmsg_seq, true))
			return; /* an abandoned SUBSCRIBE: nothing to count */
		if (e->error == -ENOENT) {
			ks->stats.stale_acks++; /* a late ACK, or a ksub already gone */
		} else if (e->error) {
			ks->stats.request_errors++;
			mmn__kmod_take_extack(ks, nlh);
			if (mmn__ratelimit_ok(&ks->rl, mmn__kmod_now_ms()))
				mmn__log(LOG_WARNING, NULL, "kmod: request refused: %s%s%s", strerror(-e->error),
					 ks->extack[0] ? ": " : "", ks->extack);
		}
		return;
	}
	if (nlh->nlmsg_type == GENL_ID_CTRL) {
		mmn__kmod_ctrl_message(ks, nlh);
		return;
	}
	if (nlh->nlmsg_type != ks->family || !genlmsg_valid_hdr(nlh, 0))
		return;
	if (genlmsg_hdr(nlh)->cmd == MMN_CMD_SUBSCRIBE) { /* a late SUBSCRIBE answer */
		struct nlattr *tb[MMN_A_MAX + 1];

		if (mmn__kmod_is_orphan(ks, nlh->nlmsg_seq, true) && genlmsg_parse(nlh, 0, tb, MMN_A_MAX, mmn__kmod_ev_policy) == 0 &&
		    tb[MMN_A_SUB_ID])
			mmn__kmod_send_sub_cmd(ks, MMN_CMD_UNSUBSCRIBE, nla_get_u32(tb[MMN_A_SUB_ID]), -1);
		return;
	}
	mmn__kmod_event_message(ks, nlh, rx);
}

static void handle_datagram(struct kmod_source *ks, unsigned char *buf, size_t len, uint64_t rx)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	int rem = (int)len;

	for (; nlmsg_ok(nlh, rem) && !ks->lost; nlh = nlmsg_next(nlh, &rem))
		handle_message(ks, nlh, rx);
}

/* Dispatch what arrived during synchronous waits, oldest first. */
static void drain_backlog(struct kmod_source *ks)
{
	struct backlog *b;

	if (ks->fatal) {
		mmn__kmod_lost(ks, ks->fatal);
		return;
	}
	if (ks->overrun_pending) {
		ks->overrun_pending = false;
		mmn__kmod_overrun(ks);
	}
	while ((b = ks->bl_head) && !ks->lost) {
		ks->bl_head = b->next;
		if (!ks->bl_head)
			ks->bl_tail = &ks->bl_head;
		handle_datagram(ks, b->data, b->len, b->rx); /* may append (ksub_add in emit) */
		free(b);
	}
}

void mmn__kmod_on_idle(uv_idle_t *h)
{
	struct kmod_source *ks = h->data;

	uv_idle_stop(h);
	drain_backlog(ks);
}

void mmn__kmod_on_poll(uv_poll_t *h, int status, int events)
{
	struct kmod_source *ks = h->data;

	if (status < 0) {
		/*
		 * libuv reports EPOLLERR as UV_EBADF and stops the handle.  A
		 * netlink socket raises it when its queue overran (sk_err =
		 * ENOBUFS): take the error (SO_ERROR clears it), resynchronise,
		 * poll again.  Anything else is fatal.
		 */
		int err = 0;
		socklen_t l = sizeof(err);

		if (getsockopt(ks->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || (err && err != ENOBUFS)) {
			mmn__kmod_lost(ks, err ? -err : status);
			return;
		}
		if (err == ENOBUFS)
			mmn__kmod_overrun(ks);
		if (ks->lost || uv_poll_start(&ks->poll, UV_READABLE, mmn__kmod_on_poll) < 0) {
			mmn__kmod_lost(ks, status);
			return;
		}
	}
	drain_backlog(ks); /* keep the kernel's order */
	for (int budget = KMOD_RECV_BUDGET; budget > 0 && !ks->lost; budget--) {
		ssize_t n = mmn__kmod_recv_one(ks, ks->rxbuf);

		if (n == 0)
			break;
		if (n == -ENOBUFS) {
			mmn__kmod_overrun(ks);
			continue;
		}
		if (n < 0) {
			mmn__kmod_lost(ks, (int)n);
			break;
		}
		handle_datagram(ks, ks->rxbuf, (size_t)n, ks->rx);
		if (ks->bl_head) /* a ksub_add during emit read ahead */
			drain_backlog(ks);
	}
}
