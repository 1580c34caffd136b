// SPDX-License-Identifier: GPL-2.0
/*
 * The test driver (see drv.h).  libnl builds and parses the messages; the
 * receive loop is ours because events and answers share one socket.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netlink.h>
#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include "drv.h"

#define QMAX 4096

struct drv {
	struct nl_sock *sk;
	int family;
	char extack[256];
	/* events received while waiting for an answer, FIFO */
	struct drv_ev *q;
	unsigned int qhead, qlen;
	/* the answer being waited for */
	uint32_t want_seq;
	int answered, err;
	int (*on_reply)(struct drv *d, struct nlmsghdr *nlh, void *arg);
	void *reply_arg;
};

struct drv *drv_open(void)
{
	struct drv *d = calloc(1, sizeof(*d));
	int one = 1, fd;

	if (!d)
		return NULL;
	d->q = calloc(QMAX, sizeof(*d->q));
	d->sk = nl_socket_alloc();
	if (!d->q || !d->sk || genl_connect(d->sk) < 0)
		goto fail;
	d->family = genl_ctrl_resolve(d->sk, MMN_GENL_NAME);
	if (d->family < 0) {
		errno = ENOENT;
		goto fail;
	}
	fd = nl_socket_get_fd(d->sk);
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	nl_socket_set_buffer_size(d->sk, 4 << 20, 1 << 20);
	return d;
fail:
	if (d->sk)
		nl_socket_free(d->sk);
	free(d->q);
	free(d);
	if (!errno)
		errno = EIO;
	return NULL;
}

void drv_close(struct drv *d)
{
	if (!d)
		return;
	nl_socket_free(d->sk);
	free(d->q);
	free(d);
}

int drv_fd(struct drv *d)
{
	return nl_socket_get_fd(d->sk);
}

uint32_t drv_portid(struct drv *d)
{
	return nl_socket_get_local_port(d->sk);
}

int drv_set_rcvbuf(struct drv *d, int bytes)
{
	return nl_socket_set_buffer_size(d->sk, bytes, 0) < 0 ? -EINVAL : 0;
}

const char *drv_extack(struct drv *d)
{
	return d->extack;
}

static int parse_event(struct drv *d, struct nlmsghdr *nlh, struct drv_ev *ev)
{
	struct genlmsghdr *g = nlmsg_data(nlh);
	struct nlattr *a[MMN_A_MAX + 1], *sub;
	int rem;

	memset(ev, 0, offsetof(struct drv_ev, subs));
	ev->t_ns = (int64_t)mono_ns();
	ev->cmd = g->cmd;
	if (genlmsg_parse(nlh, 0, a, MMN_A_MAX, NULL) < 0)
		return -EBADMSG;
	if (a[MMN_A_SEQ])
		ev->seq = nla_get_u64(a[MMN_A_SEQ]);
	if (a[MMN_A_EVENT])
		ev->event = nla_get_u32(a[MMN_A_EVENT]);
	if (a[MMN_A_EVENT_FLAGS])
		ev->flags = nla_get_u32(a[MMN_A_EVENT_FLAGS]);
	if (a[MMN_A_PID])
		ev->pid = nla_get_u32(a[MMN_A_PID]);
	if (a[MMN_A_SUB_ID])
		ev->sub_id = nla_get_u32(a[MMN_A_SUB_ID]);
	if (a[MMN_A_REASON])
		ev->reason = nla_get_u32(a[MMN_A_REASON]);
	if (a[MMN_A_RANGE_START])
		ev->range_start = nla_get_u64(a[MMN_A_RANGE_START]);
	if (a[MMN_A_RANGE_END])
		ev->range_end = nla_get_u64(a[MMN_A_RANGE_END]);
	if (!a[MMN_A_SUBS])
		return 0;
	nla_for_each_nested(sub, a[MMN_A_SUBS], rem) {
		struct nlattr *s[MMN_A_MAX + 1];

		if (ev->nsubs == DRV_MAX_SUBS)
			break;
		if (nla_parse_nested(s, MMN_A_MAX, sub, NULL) < 0)
			return -EBADMSG;
		if (s[MMN_A_SUB_ID])
			ev->subs[ev->nsubs].id = nla_get_u32(s[MMN_A_SUB_ID]);
		if (s[MMN_A_START])
			ev->subs[ev->nsubs].start = nla_get_u64(s[MMN_A_START]);
		if (s[MMN_A_END])
			ev->subs[ev->nsubs].end = nla_get_u64(s[MMN_A_END]);
		ev->nsubs++;
	}
	return 0;
}

static void parse_error(struct drv *d, struct nlmsghdr *nlh)
{
	struct nlmsgerr *e = nlmsg_data(nlh);
	int off = NLMSG_ALIGN(sizeof(*e));
	struct nlattr *a;
	int rem;

	d->err = e->error;
	d->answered = 1;
	d->extack[0] = 0;
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	/* NETLINK_CAP_ACK: only the original header follows the error */
	rem = (int)nlh->nlmsg_len - NLMSG_HDRLEN - off;
	a = (struct nlattr *)((char *)e + off);
	for (; nla_ok(a, rem); a = nla_next(a, &rem)) {
		if (nla_type(a) == NLMSGERR_ATTR_MSG)
			snprintf(d->extack, sizeof(d->extack), "%s",
				 (char *)nla_data(a));
	}
}

/* Read one datagram; dispatch its messages.  0, or -errno. */
static int pump(struct drv *d, int timeout_ms)
{
	struct sockaddr_nl nla;
	unsigned char *buf = NULL;
	struct pollfd p = { .fd = drv_fd(d), .events = POLLIN };
	struct nlmsghdr *nlh;
	int n, r;

	r = poll(&p, 1, timeout_ms);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	n = nl_recv(d->sk, &nla, &buf, NULL);
	if (n == -NLE_NOMEM)
		return -ENOBUFS;
	if (n <= 0)
		return n == 0 ? -EIO : -ENOBUFS;
	for (nlh = (struct nlmsghdr *)buf; nlmsg_ok(nlh, n);
	     nlh = nlmsg_next(nlh, &n)) {
		if (nlh->nlmsg_seq && nlh->nlmsg_seq == d->want_seq) {
			if (nlh->nlmsg_type == NLMSG_ERROR)
				parse_error(d, nlh);
			else if (nlh->nlmsg_type == NLMSG_DONE)
				d->answered = 1;
			else if (d->on_reply)
				d->err = d->on_reply(d, nlh, d->reply_arg);
			continue;
		}
		if (nlh->nlmsg_type == d->family && !nlh->nlmsg_seq &&
		    d->qlen < QMAX) {
			struct drv_ev *ev = &d->q[(d->qhead + d->qlen) % QMAX];

			if (!parse_event(d, nlh, ev))
				d->qlen++;
		}
	}
	free(buf);
	return 0;
}

struct nl_msg *drv_msg(struct drv *d, uint8_t cmd)
{
	struct nl_msg *msg = nlmsg_alloc();

	if (msg && !genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, d->family, 0,
				NLM_F_REQUEST | NLM_F_ACK, cmd, MMN_GENL_VERSION)) {
		nlmsg_free(msg);
		msg = NULL;
	}
	return msg;
}

static int request(struct drv *d, struct nl_msg *msg,
		   int (*on_reply)(struct drv *, struct nlmsghdr *, void *),
		   void *arg)
{
	int r;

	d->extack[0] = 0;
	r = nl_send_auto(d->sk, msg);
	d->want_seq = nlmsg_hdr(msg)->nlmsg_seq;
	nlmsg_free(msg);
	if (r < 0)
		return -EIO;
	d->answered = 0;
	d->err = 0;
	d->on_reply = on_reply;
	d->reply_arg = arg;
	while (!d->answered) {
		r = pump(d, 20000);
		if (r == -ENOBUFS)
			continue;	/* events lost; the answer may still come */
		if (r < 0)
			return r;
	}
	d->want_seq = 0;
	return d->err;
}

int drv_request(struct drv *d, struct nl_msg *msg)
{
	return request(d, msg, NULL, NULL);
}

int drv_bind(struct drv *d, uint32_t timeout_ms)
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_BIND);

	if (!m)
		return -ENOMEM;
	if (timeout_ms)
		nla_put_u32(m, MMN_A_TIMEOUT_MS, timeout_ms);
	return request(d, m, NULL, NULL);
}

int drv_unbind(struct drv *d)
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_UNBIND);

	return m ? request(d, m, NULL, NULL) : -ENOMEM;
}

static int id_reply(struct drv *d, struct nlmsghdr *nlh, void *arg)
{
	struct nlattr *a[MMN_A_MAX + 1];

	if (genlmsg_parse(nlh, 0, a, MMN_A_MAX, NULL) < 0 || !a[MMN_A_SUB_ID])
		return -EBADMSG;
	*(uint32_t *)arg = nla_get_u32(a[MMN_A_SUB_ID]);
	return 0;
}

int drv_subscribe(struct drv *d, pid_t pid, uint64_t start, uint64_t len,
		  uint32_t flags, uint32_t timeout_ms, uint32_t *id)
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_SUBSCRIBE);
	uint32_t dummy;

	if (!m)
		return -ENOMEM;
	nla_put_u32(m, MMN_A_PID, (uint32_t)pid);
	nla_put_u64(m, MMN_A_START, start);
	nla_put_u64(m, MMN_A_LENGTH, len);
	if (flags)
		nla_put_u32(m, MMN_A_SUB_FLAGS, flags);
	if (timeout_ms)
		nla_put_u32(m, MMN_A_TIMEOUT_MS, timeout_ms);
	return request(d, m, id_reply, id ? id : &dummy);
}

int drv_unsubscribe(struct drv *d, uint32_t id)
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_UNSUBSCRIBE);

	if (!m)
		return -ENOMEM;
	nla_put_u32(m, MMN_A_SUB_ID, id);
	return request(d, m, NULL, NULL);
}

int drv_set_flags(struct drv *d, uint32_t id, uint32_t flags)
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_SET_FLAGS);

	if (!m)
		return -ENOMEM;
	nla_put_u32(m, MMN_A_SUB_ID, id);
	nla_put_u32(m, MMN_A_SUB_FLAGS, flags);
	return request(d, m, NULL, NULL);
}

int drv_ack(struct drv *d, uint64_t seq)
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_ACK);

	if (!m)
		return -ENOMEM;
	nla_put_u64(m, MMN_A_SEQ, seq);
	return request(d, m, NULL, NULL);
}

static int stats_reply(struct drv *d, struct nlmsghdr *nlh, void *arg)
{
	uint64_t *st = arg;
	struct nlattr *a[MMN_A_MAX + 1], *s;
	int rem;

	if (genlmsg_parse(nlh, 0, a, MMN_A_MAX, NULL) < 0 || !a[MMN_A_STATS])
		return -EBADMSG;
	nla_for_each_nested(s, a[MMN_A_STATS], rem) {
		if (nla_type(s) <= MMN_STATS_A_MAX)
			st[nla_type(s)] = nla_get_u64(s);
	}
	return 0;
}

int drv_stats(struct drv *d, uint64_t stats[MMN_STATS_A_MAX + 1])
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_GET_STATS);

	memset(stats, 0, sizeof(uint64_t) * (MMN_STATS_A_MAX + 1));
	return m ? request(d, m, stats_reply, stats) : -ENOMEM;
}

struct subs_arg {
	struct drv_sub *out;
	int max, n;
};

static int subs_reply(struct drv *d, struct nlmsghdr *nlh, void *arg)
{
	struct subs_arg *sa = arg;
	struct nlattr *a[MMN_A_MAX + 1];
	struct drv_sub *s;

	if (genlmsg_parse(nlh, 0, a, MMN_A_MAX, NULL) < 0)
		return -EBADMSG;
	if (sa->n >= sa->max) {
		sa->n++;
		return 0;
	}
	s = &sa->out[sa->n++];
	memset(s, 0, sizeof(*s));
	if (a[MMN_A_SUB_ID])
		s->id = nla_get_u32(a[MMN_A_SUB_ID]);
	if (a[MMN_A_PID])
		s->pid = nla_get_u32(a[MMN_A_PID]);
	if (a[MMN_A_SUB_FLAGS])
		s->flags = nla_get_u32(a[MMN_A_SUB_FLAGS]);
	if (a[MMN_A_SUB_STATE])
		s->state = nla_get_u32(a[MMN_A_SUB_STATE]);
	if (a[MMN_A_TIMEOUT_MS])
		s->timeout_ms = nla_get_u32(a[MMN_A_TIMEOUT_MS]);
	if (a[MMN_A_START])
		s->start = nla_get_u64(a[MMN_A_START]);
	if (a[MMN_A_LENGTH])
		s->length = nla_get_u64(a[MMN_A_LENGTH]);
	return 0;
}

int drv_subs(struct drv *d, struct drv_sub *out, int max)
{
	struct subs_arg sa = { .out = out, .max = max };
	struct nl_msg *msg = nlmsg_alloc();
	int r;

	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, d->family, 0,
			 NLM_F_REQUEST | NLM_F_DUMP, MMN_CMD_GET_SUBS,
			 MMN_GENL_VERSION)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	r = request(d, msg, subs_reply, &sa);
	return r < 0 ? r : sa.n;
}

int drv_next(struct drv *d, struct drv_ev *ev, int timeout_ms)
{
	int64_t deadline = (int64_t)mono_ns() + (int64_t)timeout_ms * 1000000;
	int r;

	while (!d->qlen) {
		int64_t left = (deadline - (int64_t)mono_ns()) / 1000000;

		if (left < 0)
			return 0;
		r = pump(d, (int)left);
		if (r == -ETIMEDOUT)
			return 0;
		if (r < 0)
			return r;
	}
	*ev = d->q[d->qhead];
	d->qhead = (d->qhead + 1) % QMAX;
	d->qlen--;
	return 1;
}

int drv_next_cmd(struct drv *d, uint8_t cmd, struct drv_ev *ev, int timeout_ms)
{
	int64_t deadline = (int64_t)mono_ns() + (int64_t)timeout_ms * 1000000;
	int r;

	for (;;) {
		int64_t left = (deadline - (int64_t)mono_ns()) / 1000000;

		r = drv_next(d, ev, left < 0 ? 0 : (int)left);
		if (r <= 0 || ev->cmd == cmd)
			return r;
	}
}
