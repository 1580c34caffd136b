/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source's channel to mmn.ko: its one generic-netlink socket
 * (options, family lookup), the requests sent on it (the prebuilt ACK,
 * SUBSCRIBE's flags commands, synchronous requests bounded in time with
 * everything else that arrives meanwhile kept in the backlog) and the reading
 * of one datagram.  Why one socket and how the wait is bounded: kmod.c.
 * It calls nothing of the kmod files above it; the backlog is drained
 * through ks->drain_cb, set by kmod.c.
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

#include "source/kmod-channel.h"

#include "log.h"
#include "source/kmod-source.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

uint64_t mmn__kmod_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* libnl's NLE_* codes to a negative errno. */
int mmn__kmod_nlerr(int e)
{
	switch (e < 0 ? -e : e) {
	case 0:
		return 0;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
	case NLE_NOACCESS:
		return -EPERM;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_INVAL:
	case NLE_MISSING_ATTR:
		return -EINVAL;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_MSGSIZE:
		return -EMSGSIZE;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_BAD_SOCK:
		return -EBADF;
	case NLE_NOADDR:
		return -EADDRNOTAVAIL;
	case NLE_MSG_OVERFLOW:
		return -ENOBUFS;
	default:
		return -EIO;
	}
}

/* ---- requests ------------------------------------------------------------ */

struct nl_msg *mmn__kmod_req_new(struct kmod_source *ks, uint8_t cmd)
{
	struct nl_msg *msg = nlmsg_alloc();

	if (!msg)
		return NULL;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, ks->family, 0, 0, cmd, MMN_GENL_VERSION)) {
		nlmsg_free(msg);
		return NULL;
	}
	return msg;
}

/* Send without waiting; an error answer comes back later and is counted. */
int mmn__kmod_req_send(struct kmod_source *ks, struct nl_msg *msg)
{
	int r = nl_send_auto(ks->sk, msg);

	return r < 0 ? mmn__kmod_nlerr(r) : 0;
}

/*
 * The ACK asks for no answer (libnl would add NLM_F_ACK): the kernel then
 * answers only a refused one (-ENOENT: stale), which handle_message()
 * counts.  An answer to every ACK would cost an skb, a queueing and a
 * receive per blocking event, right where the module's waiter is woken.
 */
int mmn__kmod_send_ack(struct kmod_source *ks, uint64_t seq)
{
	struct nlmsghdr *nlh = nlmsg_hdr(ks->ack_msg);
	int r;

	nlh->nlmsg_seq = NL_AUTO_SEQ;
	memcpy(nla_data(ks->ack_seq), &seq, sizeof(seq));
	nl_complete_msg(ks->sk, ks->ack_msg);
	nlh->nlmsg_flags &= ~NLM_F_ACK;
	r = nl_send(ks->sk, ks->ack_msg);
	if (r < 0)
		return mmn__kmod_nlerr(r);
	ks->stats.acks_sent++;
	return 0;
}

int mmn__kmod_send_sub_cmd(struct kmod_source *ks, uint8_t cmd, uint32_t id, int flags)
{
	struct nl_msg *msg = mmn__kmod_req_new(ks, cmd);
	int r = -ENOMEM;

	if (!msg)
		return r;
	if (nla_put_u32(msg, MMN_A_SUB_ID, id) < 0 || (flags >= 0 && nla_put_u32(msg, MMN_A_SUB_FLAGS, (uint32_t)flags) < 0))
		goto out;
	r = mmn__kmod_req_send(ks, msg);
out:
	nlmsg_free(msg);
	return r;
}

/* Remember the module's extack message of an error answer. */
void mmn__kmod_take_extack(struct kmod_source *ks, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = NLMSG_DATA(nlh);
	struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];
	size_t off = NLMSG_HDRLEN + sizeof(*e);

	ks->extack[0] = '\0';
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) || nlh->nlmsg_len < off)
		return;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - NLMSG_HDRLEN;
	if (nlh->nlmsg_len <= off)
		return;
	if (nla_parse(tb, NLMSGERR_ATTR_MAX, (struct nlattr *)((char *)nlh + off), (int)(nlh->nlmsg_len - off), NULL) < 0)
		return;
	if (tb[NLMSGERR_ATTR_MSG])
		nla_strlcpy(ks->extack, tb[NLMSGERR_ATTR_MSG], sizeof(ks->extack));
}

/*
 * Receive one datagram from the kernel into @buf.  Returns its length, 0 when
 * nothing is queued, -ENOBUFS when events were lost, another negative errno
 * when the socket failed.
 */
ssize_t mmn__kmod_recv_one(struct kmod_source *ks, unsigned char *buf)
{
	struct sockaddr_nl sa;
	struct iovec iov = { buf, KMOD_RXBUF };
	struct msghdr mh = { .msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	for (;;) {
		n = recvmsg(ks->fd, &mh, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		if (mh.msg_flags & MSG_TRUNC) { /* lost part of an event: as bad as an overrun */
			ks->stats.bad_messages++;
			return -ENOBUFS;
		}
		if (sa.nl_pid != 0) /* only the kernel talks to us */
			continue;
		ks->rx++;
		return n;
	}
}

bool mmn__kmod_is_orphan(struct kmod_source *ks, uint32_t seq, bool drop)
{
	for (size_t i = 0; i < ks->norphans; i++) {
		if (ks->orphans[i] != seq)
			continue;
		if (drop)
			ks->orphans[i] = ks->orphans[--ks->norphans];
		return true;
	}
	return false;
}

static void backlog_add(struct kmod_source *ks, const struct nlmsghdr *nlh, uint64_t rx)
{
	struct backlog *b = malloc(sizeof(*b) + nlh->nlmsg_len);

	if (!b) { /* the event is lost: resynchronise like after an overrun */
		ks->overrun_pending = true;
		return;
	}
	b->next = NULL;
	b->rx = rx;
	b->len = nlh->nlmsg_len;
	memcpy(b->data, nlh, nlh->nlmsg_len);
	*ks->bl_tail = b;
	ks->bl_tail = &b->next;
}

static bool holds_kernel(struct kmod_source *ks, const struct nlmsghdr *nlh)
{
	struct nlattr *tb[MMN_A_MAX + 1];

	if (nlh->nlmsg_type != ks->family || genlmsg_hdr((struct nlmsghdr *)nlh)->cmd != MMN_CMD_INVALIDATE)
		return false;
	if (genlmsg_parse((struct nlmsghdr *)nlh, 0, tb, MMN_A_MAX, mmn__kmod_ev_policy) < 0 || !tb[MMN_A_EVENT_FLAGS])
		return false;
	return nla_get_u32(tb[MMN_A_EVENT_FLAGS]) & MMN_EV_F_NEEDS_ACK;
}

/*
 * The kernel's answer (NLMSG_ERROR) to our request: 0 or negative errno.
 * @need_id: the request wants a SUB_ID reply, and none came before.
 */
static int answer_status(struct kmod_source *ks, struct nlmsghdr *nlh, bool need_id)
{
	const struct nlmsgerr *e = NLMSG_DATA(nlh);
	int r;

	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*e))) {
		r = -EBADMSG;
	} else {
		r = e->error;
		if (r)
			mmn__kmod_take_extack(ks, nlh);
	}
	/*
	 * Unknown family: the module went away and its DELFAMILY notice was
	 * lost (a congested socket drops everything until its queue is empty).
	 */
	if (r == -ENOENT && !ks->extack[0] && mmn__kmod_family_gone(ks)) {
		ks->fatal = -ENODEV;
		r = -ENODEV;
	}
	if (r == 0 && need_id)
		r = -EBADMSG; /* acknowledged but no SUB_ID: not our module */
	return r;
}

/* A reply carrying the SUB_ID of our SUBSCRIBE: true when @nlh had one. */
static bool answer_sub_id(struct nlmsghdr *nlh, uint32_t *sub_id, uint64_t *born, uint64_t rx)
{
	struct nlattr *tb[MMN_A_MAX + 1];

	if (genlmsg_parse(nlh, 0, tb, MMN_A_MAX, mmn__kmod_ev_policy) < 0 || !tb[MMN_A_SUB_ID])
		return false;
	*sub_id = nla_get_u32(tb[MMN_A_SUB_ID]);
	*born = rx;
	return true;
}

/*
 * Send @msg asking for the kernel's acknowledgement and wait, bounded, for
 * the answer; keep everything else that arrives for later.  *@sub_id, if
 * given, receives the SUB_ID of the reply and *@born its rx number.
 */
int mmn__kmod_transact(struct kmod_source *ks, struct nl_msg *msg, uint32_t *sub_id, uint64_t *born)
{
	uint64_t deadline = mmn__kmod_now_ms() + KMOD_SYNC_TIMEOUT_MS, t;
	struct nlmsghdr *req = nlmsg_hdr(msg);
	bool have_id = false;
	uint32_t seq;
	int r;

	req->nlmsg_flags |= NLM_F_ACK;
	r = nl_send_auto(ks->sk, msg);
	if (r < 0)
		return mmn__kmod_nlerr(r);
	seq = req->nlmsg_seq;

	for (;;) {
		ssize_t n = mmn__kmod_recv_one(ks, ks->syncbuf);

		if (n == -ENOBUFS) { /* our answer may be among the lost: the deadline decides */
			ks->overrun_pending = true;
			continue;
		}
		if (n < 0) { /* reported as SOURCE_LOST from the loop, not from inside ksub_add */
			ks->fatal = (int)n;
			if (ks->started)
				uv_idle_start(&ks->idle, ks->drain_cb);
			return (int)n;
		}
		if (n == 0) {
			struct pollfd p = { .fd = ks->fd, .events = POLLIN };

			t = mmn__kmod_now_ms();
			if (t >= deadline)
				goto timeout;
			if (poll(&p, 1, (int)(deadline - t)) < 0 && errno != EINTR)
				return -errno;
			continue;
		}

		struct nlmsghdr *nlh = (struct nlmsghdr *)ks->syncbuf;
		uint64_t rx = ks->rx;
		int len = (int)n;
		bool done = false;

		for (; nlmsg_ok(nlh, len); nlh = nlmsg_next(nlh, &len)) {
			if (done || nlh->nlmsg_seq != seq) {
				backlog_add(ks, nlh, rx);
				if (holds_kernel(ks, nlh)) {
					t = mmn__kmod_now_ms() + KMOD_SYNC_HOLDING_MS;
					deadline = t < deadline ? t : deadline;
				}
				continue;
			}
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				r = answer_status(ks, nlh, sub_id && !have_id);
				done = true;
			} else if (nlh->nlmsg_type == ks->family && sub_id) {
				have_id |= answer_sub_id(nlh, sub_id, born, rx);
			}
		}
		if (done) {
			if (ks->started && (ks->bl_head || ks->overrun_pending || ks->fatal))
				uv_idle_start(&ks->idle, ks->drain_cb);
			return r;
		}
	}

timeout:
	ks->stats.sync_timeouts++;
	if (sub_id) { /* remove it when the late answer comes */
		if (ks->norphans < KMOD_MAX_ORPHANS)
			ks->orphans[ks->norphans++] = seq;
	}
	return -ETIMEDOUT;
}

/*
 * After an overrun the module's CTRL_CMD_DELFAMILY may be among the lost
 * messages: ask nlctrl on a short-lived socket whether our family still is
 * the registered one.
 */
bool mmn__kmod_family_gone(struct kmod_source *ks)
{
	struct nl_sock *sk = nl_socket_alloc();
	int id = -1;

	if (!sk)
		return false;
	if (genl_connect(sk) == 0)
		id = genl_ctrl_resolve(sk, MMN_GENL_NAME);
	nl_socket_free(sk);
	return id == -NLE_OBJ_NOTFOUND || (id >= 0 && id != ks->family);
}

/* Socket options; a failure of the optional ones is not fatal. */
int mmn__kmod_setup_socket(struct kmod_source *ks)
{
	int one = 1, size = KMOD_RCVBUF, grp, r;

	/* libnl opens it SOCK_CLOEXEC; make sure, no child may keep it (the module would wait on it) */
	if (fcntl(ks->fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	setsockopt(ks->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(ks->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	if (setsockopt(ks->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
		r = nl_socket_set_buffer_size(ks->sk, size, 0); /* capped by net.core.rmem_max */
		if (r < 0)
			mmn__log(LOG_WARNING, NULL, "kmod: cannot enlarge the netlink receive queue: %s",
				 nl_geterror(r));
	}
	/* learn about the module's unloading: CTRL_CMD_DELFAMILY */
	grp = genl_ctrl_resolve_grp(ks->sk, "nlctrl", "notify");
	if (grp >= 0)
		nl_socket_add_membership(ks->sk, grp);
	r = nl_socket_set_nonblocking(ks->sk);
	return r < 0 ? mmn__kmod_nlerr(r) : 0;
}

int mmn__kmod_build_ack(struct kmod_source *ks)
{
	ks->ack_msg = mmn__kmod_req_new(ks, MMN_CMD_ACK);
	if (!ks->ack_msg || nla_put_u64(ks->ack_msg, MMN_A_SEQ, 0) < 0)
		return -ENOMEM;
	ks->ack_seq = nlmsg_find_attr(nlmsg_hdr(ks->ack_msg), GENL_HDRLEN, MMN_A_SEQ);
	return ks->ack_seq ? 0 : -EIO;
}
