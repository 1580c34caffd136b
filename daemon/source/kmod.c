/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source: mmn.ko over the "mmn" generic-netlink family
 * (<linux/mmn.h> is its only definition).
 *
 * One socket, not two.  The netlink documentation advises a socket for
 * requests and another for notifications, but mmn.ko unicasts its events to
 * the port that sent BIND and accepts every other command only from that same
 * port (-EPERM otherwise), so requests and events must share it.  Replies are
 * told from events by their sequence number (events carry seq 0).
 *
 * The socket is SOCK_CLOEXEC (a child that inherited it would keep the
 * module waiting on a daemon that is gone), non-blocking, has a large
 * receive queue (a burst of events must not overflow it) and is polled
 * with uv_poll on mmnd's loop.
 * Received datagrams land in a preallocated buffer and events are parsed
 * into a preallocated ksub array: nothing is allocated per event.  ACK is
 * one prebuilt message patched in place and sent without asking for the
 * kernel's acknowledgement (a stale ACK's -ENOENT comes back and is counted).
 *
 * Synchronous requests.  source_ops.ksub_add returns the kernel's SUB_ID, so
 * SUBSCRIBE (and BIND) wait for the module's answer on the loop thread; a
 * worker thread would not help, since the answer arrives on the one socket
 * the loop reads and the broker needs the id before it replies to its
 * client.  The wait is bounded and never drops events: whatever arrives
 * meanwhile is kept in a backlog and dispatched, in order, right after (a
 * uv_idle handle).  SUBSCRIBE normally returns in microseconds; it can only
 * block behind one of our own pending invalidations through kernel locks
 * (mmu_notifier_register() takes the target's mmap_lock and
 * mm_take_all_locks() the rmap locks an invalidation of another subscribed
 * mm may hold while it waits for our ACK).  So once an event that needs an
 * ACK is in the backlog, the wait is cut to KMOD_SYNC_HOLDING_MS: ksub_add
 * fails with -ETIMEDOUT, the loop goes back to acking, and when the late
 * answer arrives the orphaned subscription is removed again.
 *
 * Lost events.  ENOBUFS (the receive queue overran, the module dropped
 * events; libuv reports the socket's EPOLLERR as UV_EBADF) revokes every
 * ksub with reason DESYNC; the broker resynchronises its clients and calls
 * ksub_resynced.  A malformed or truncated message counts as an overrun.
 * An overrun never loses an INVALIDATE_END of a delivered INVALIDATE: the
 * module retries that one until it is queued (it closes an event, which
 * nothing else can do).  Only a loss on our side (a truncated or unreadable
 * datagram, a backlog entry that could not be allocated) can take an END
 * away; the broker then ends the event at the next END of the same target
 * (see fanout.c), or at its counted last-resort timer.
 * Socket errors and the family's disappearance are SOURCE_LOST: nlctrl's
 * CTRL_CMD_DELFAMILY on its "notify" group (the module was unloaded) or,
 * since a congested netlink socket drops everything until its queue is
 * empty, a family lookup after each overrun and after an unknown-family
 * -ENOENT answer.
 *
 * Subscription ids.  The module reuses freed ids.  Every datagram read gets
 * a number (rx) and a ksub remembers the rx of the SUBSCRIBE answer that
 * created it; a message read before that is about an older subscription
 * with the same id and never reaches the new one.  After SUBSCRIBE the
 * broker's pidfd is checked: if the process it names is still alive, the
 * pid the module resolved was that process (no pid-reuse race).
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

#include "source/kmod-genl.h"
#include "log.h"
#include "mmn.pb-c.h"
#include "source/source.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define KMOD_RCVBUF (16 << 20)          /* receive queue: ~100k INVALIDATEs */
#define KMOD_RXBUF (64 << 10)           /* one datagram */
#define KMOD_SYNC_TIMEOUT_MS 2000       /* bound on a synchronous request */
#define KMOD_SYNC_HOLDING_MS 50         /* ... once the kernel waits for our ACK */
#define KMOD_RECV_BUDGET 64             /* datagrams per poll callback */
#define KMOD_MAX_AWAITING 1024          /* events the kernel waits on at once */
#define KMOD_MAX_ORPHANS 16             /* SUBSCRIBEs given up on, answer pending */
#define KMOD_EVENT_MASK 0xffu           /* enum mmn_event 0..7 */

/* A kernel subscription the broker holds (open addressing, linear probing). */
struct ksub_slot {
	uint32_t id;
	uint64_t born; /* rx number of the SUBSCRIBE answer that created it */
	bool used;
	bool blocking;
	bool dead; /* released or revoked: events are no longer passed on */
};

/* A datagram received while waiting for a synchronous answer. */
struct backlog {
	struct backlog *next;
	uint64_t rx;
	size_t len;
	unsigned char data[];
};

struct kmod_source {
	struct source base;     /* first: the broker sees a struct source * */
	struct nl_sock *sk;
	int fd;
	int family;
	uint32_t portid;
	uv_poll_t poll;
	uv_idle_t idle;         /* drains the backlog; runs only while it is non-empty */
	int open_handles;       /* the struct is freed when both handles closed */
	bool lost;
	bool started;           /* handles initialised and polling */
	bool overrun_pending;   /* ENOBUFS seen during a synchronous wait */
	int fatal;              /* socket error seen during a synchronous wait */

	unsigned char *rxbuf, *syncbuf;
	/*
	 * Every datagram read from the socket gets the next rx number.  The
	 * module reuses freed subscription ids: a message read before the
	 * SUBSCRIBE answer that created ksub X (rx < X.born) is about an
	 * earlier subscription with the same id and must not reach X.
	 */
	uint64_t rx;
	struct backlog *bl_head, **bl_tail;

	struct nl_msg *ack_msg; /* prebuilt ACK; MMN_A_SEQ patched in place */
	struct nlattr *ack_seq;

	struct ksub_slot *ksubs; /* capacity ksub_cap, a power of two */
	size_t ksub_cap, nksubs;

	/* event ids the kernel waits on, reported to the broker, not yet acked */
	uint64_t awaiting[KMOD_MAX_AWAITING];
	size_t nawaiting;
	bool awaiting_overflow;

	uint32_t orphans[KMOD_MAX_ORPHANS]; /* nlmsg_seq of abandoned SUBSCRIBEs */
	size_t norphans;

	struct source_event_sub *subs; /* parse target, grown only for bigger events */
	size_t subs_cap;

	struct kmod_stats stats;
	struct ratelimit rl;
	char extack[128];       /* the module's last error message */
};

static void on_idle(uv_idle_t *h);
static bool family_gone(struct kmod_source *ks);

static struct kmod_source *to_ks(struct source *s)
{
	return (struct kmod_source *)s;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* libnl's NLE_* codes to a negative errno. */
static int nlerr(int e)
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

/* ---- the ksub table ------------------------------------------------------ */

static size_t ksub_hash(uint32_t id, size_t cap)
{
	return (size_t)(id * 2654435761u) & (cap - 1);
}

static struct ksub_slot *ksub_find(struct kmod_source *ks, uint32_t id)
{
	size_t i = ksub_hash(id, ks->ksub_cap);

	while (ks->ksubs[i].used) {
		if (ks->ksubs[i].id == id)
			return &ks->ksubs[i];
		i = (i + 1) & (ks->ksub_cap - 1);
	}
	return NULL;
}

static void ksub_place(struct ksub_slot *tab, size_t cap, const struct ksub_slot *k)
{
	size_t i = ksub_hash(k->id, cap);

	while (tab[i].used)
		i = (i + 1) & (cap - 1);
	tab[i] = *k;
}

static int ksub_insert(struct kmod_source *ks, uint32_t id, bool blocking, uint64_t born)
{
	struct ksub_slot k = { .id = id, .born = born, .used = true, .blocking = blocking };

	if (ksub_find(ks, id))
		return -EEXIST;
	if ((ks->nksubs + 1) * 2 > ks->ksub_cap) { /* keep the load under 1/2 */
		size_t cap = ks->ksub_cap * 2;
		struct ksub_slot *tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return -ENOMEM;
		for (size_t i = 0; i < ks->ksub_cap; i++)
			if (ks->ksubs[i].used)
				ksub_place(tab, cap, &ks->ksubs[i]);
		free(ks->ksubs);
		ks->ksubs = tab;
		ks->ksub_cap = cap;
	}
	ksub_place(ks->ksubs, ks->ksub_cap, &k);
	ks->nksubs++;
	return 0;
}

/* Backward-shift deletion: no tombstones. */
static void ksub_remove(struct kmod_source *ks, struct ksub_slot *k)
{
	size_t mask = ks->ksub_cap - 1, i = (size_t)(k - ks->ksubs), j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (!ks->ksubs[j].used)
			break;
		size_t h = ksub_hash(ks->ksubs[j].id, ks->ksub_cap);
		/* move j back into the hole at i unless its home lies in (i, j] */
		if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
			ks->ksubs[i] = ks->ksubs[j];
			i = j;
		}
	}
	ks->ksubs[i].used = false;
	ks->nksubs--;
}

/* ---- requests ------------------------------------------------------------ */

static struct nl_msg *req_new(struct kmod_source *ks, uint8_t cmd)
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
static int req_send(struct kmod_source *ks, struct nl_msg *msg)
{
	int r = nl_send_auto(ks->sk, msg);

	return r < 0 ? nlerr(r) : 0;
}

static int send_ack(struct kmod_source *ks, uint64_t seq)
{
	nlmsg_hdr(ks->ack_msg)->nlmsg_seq = NL_AUTO_SEQ;
	memcpy(nla_data(ks->ack_seq), &seq, sizeof(seq));
	int r = req_send(ks, ks->ack_msg);

	if (r == 0)
		ks->stats.acks_sent++;
	return r;
}

static int send_sub_cmd(struct kmod_source *ks, uint8_t cmd, uint32_t id, int flags)
{
	struct nl_msg *msg = req_new(ks, cmd);
	int r = -ENOMEM;

	if (!msg)
		return r;
	if (nla_put_u32(msg, MMN_A_SUB_ID, id) < 0 || (flags >= 0 && nla_put_u32(msg, MMN_A_SUB_FLAGS, (uint32_t)flags) < 0))
		goto out;
	r = req_send(ks, msg);
out:
	nlmsg_free(msg);
	return r;
}

/* Remember the module's extack message of an error answer. */
static void take_extack(struct kmod_source *ks, const struct nlmsghdr *nlh)
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
static ssize_t recv_one(struct kmod_source *ks, unsigned char *buf)
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

static bool is_orphan(struct kmod_source *ks, uint32_t seq, bool drop)
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
			take_extack(ks, nlh);
	}
	/*
	 * Unknown family: the module went away and its DELFAMILY notice was
	 * lost (a congested socket drops everything until its queue is empty).
	 */
	if (r == -ENOENT && !ks->extack[0] && family_gone(ks)) {
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
static int transact(struct kmod_source *ks, struct nl_msg *msg, uint32_t *sub_id, uint64_t *born)
{
	uint64_t deadline = now_ms() + KMOD_SYNC_TIMEOUT_MS, t;
	struct nlmsghdr *req = nlmsg_hdr(msg);
	bool have_id = false;
	uint32_t seq;
	int r;

	req->nlmsg_flags |= NLM_F_ACK;
	r = nl_send_auto(ks->sk, msg);
	if (r < 0)
		return nlerr(r);
	seq = req->nlmsg_seq;

	for (;;) {
		ssize_t n = recv_one(ks, ks->syncbuf);

		if (n == -ENOBUFS) { /* our answer may be among the lost: the deadline decides */
			ks->overrun_pending = true;
			continue;
		}
		if (n < 0) { /* reported as SOURCE_LOST from the loop, not from inside ksub_add */
			ks->fatal = (int)n;
			if (ks->started)
				uv_idle_start(&ks->idle, on_idle);
			return (int)n;
		}
		if (n == 0) {
			struct pollfd p = { .fd = ks->fd, .events = POLLIN };

			t = now_ms();
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
					t = now_ms() + KMOD_SYNC_HOLDING_MS;
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
				uv_idle_start(&ks->idle, on_idle);
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

/* ---- events -------------------------------------------------------------- */

static void lost(struct kmod_source *ks, int err)
{
	struct source_event ev = { .kind = SOURCE_LOST, .reason = (uint32_t)err };

	if (ks->lost)
		return;
	ks->lost = true;
	uv_poll_stop(&ks->poll);
	uv_idle_stop(&ks->idle);
	mmn__log(LOG_ERR, NULL, "kmod source lost: %s", strerror(-err));
	ks->base.emit(&ev, ks->base.userdata);
}

static bool awaiting_take(struct kmod_source *ks, uint64_t id)
{
	for (size_t i = 0; i < ks->nawaiting; i++) {
		if (ks->awaiting[i] == id) {
			ks->awaiting[i] = ks->awaiting[--ks->nawaiting];
			return true;
		}
	}
	return ks->awaiting_overflow; /* we may have forgotten it */
}

/*
 * After an overrun the module's CTRL_CMD_DELFAMILY may be among the lost
 * messages: ask nlctrl on a short-lived socket whether our family still is
 * the registered one.
 */
static bool family_gone(struct kmod_source *ks)
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

/* Every ksub is revoked: events were lost and nobody knows which. */
static void overrun(struct kmod_source *ks)
{
	struct source_event_sub sub = { 0 };
	struct source_event ev = { .kind = SOURCE_REVOKED, .reason = MMN__V1__REVOKE_REASON__REVOKE_DESYNC,
				   .range_end = UINT64_MAX, .nsubs = 1, .subs = &sub };
	uint32_t *ids;
	size_t n = 0;

	ks->stats.overruns++;
	if (family_gone(ks)) {
		lost(ks, -ENODEV);
		return;
	}
	if (mmn__ratelimit_ok(&ks->rl, now_ms()))
		mmn__log(LOG_WARNING, NULL, "kmod: netlink receive queue overran, resynchronising %zu subscriptions",
			 ks->nksubs);
	/* collect first: the broker calls ksub_del from emit */
	ids = calloc(ks->nksubs ? ks->nksubs : 1, sizeof(*ids));
	for (size_t i = 0; i < ks->ksub_cap; i++) {
		struct ksub_slot *k = &ks->ksubs[i];

		if (!k->used || k->dead)
			continue;
		k->dead = true;
		if (ids)
			ids[n++] = k->id;
	}
	for (size_t i = 0; i < n && !ks->lost; i++) {
		if (!ksub_find(ks, ids[i]))
			continue;
		sub.ksub_id = ids[i];
		ks->stats.desync_revokes++;
		ks->base.emit(&ev, ks->base.userdata);
	}
	free(ids);
}

static void ctrl_message(struct kmod_source *ks, struct nlmsghdr *nlh)
{
	struct nlattr *tb[CTRL_ATTR_MAX + 1];

	if (!genlmsg_valid_hdr(nlh, 0) || genlmsg_hdr(nlh)->cmd != CTRL_CMD_DELFAMILY)
		return;
	if (genlmsg_parse(nlh, 0, tb, CTRL_ATTR_MAX, NULL) < 0 || !tb[CTRL_ATTR_FAMILY_ID])
		return;
	if (nla_get_u16(tb[CTRL_ATTR_FAMILY_ID]) == ks->family)
		lost(ks, -ENODEV);
}

/* The ksub a message read as @rx is about, if the broker still holds it. */
static struct ksub_slot *ksub_for(struct kmod_source *ks, uint32_t id, uint64_t rx)
{
	struct ksub_slot *k = ksub_find(ks, id);

	return k && k->born <= rx ? k : NULL;
}

/* Keep only the ksubs the broker still holds and that are not dead. */
static size_t filter_live(struct kmod_source *ks, struct source_event_sub *subs, size_t n, uint64_t rx)
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		struct ksub_slot *k = ksub_for(ks, subs[i].ksub_id, rx);

		if (k && !k->dead)
			subs[j++] = subs[i];
	}
	return j;
}

static void event_message(struct kmod_source *ks, struct nlmsghdr *nlh, uint64_t rx)
{
	struct source_event ev;
	struct ksub_slot *k;
	size_t need;
	int r;

	r = mmn__kmod_parse_event(nlh, &ev, ks->subs, ks->subs_cap, &need);
	if (r == -ENOSPC) {
		struct source_event_sub *p = realloc(ks->subs, need * sizeof(*p));

		if (p) {
			ks->subs = p;
			ks->subs_cap = need;
			r = mmn__kmod_parse_event(nlh, &ev, ks->subs, ks->subs_cap, &need);
		}
	}
	if (r == -EOPNOTSUPP)
		return; /* a reply to an asynchronous request, or a command we do not use */
	if (r < 0) { /* an event we cannot read is an event lost */
		ks->stats.bad_messages++;
		overrun(ks);
		return;
	}

	switch (ev.kind) {
	case SOURCE_INVALIDATE:
		ks->stats.events++;
		ev.nsubs = filter_live(ks, ks->subs, ev.nsubs, rx);
		if (ev.nsubs == 0) { /* only ksubs being removed: nobody to ask */
			if (ev.needs_ack) {
				ks->stats.self_acks++;
				send_ack(ks, ev.event_id);
			}
			return;
		}
		if (ev.needs_ack) {
			if (ks->nawaiting < KMOD_MAX_AWAITING)
				ks->awaiting[ks->nawaiting++] = ev.event_id;
			else
				ks->awaiting_overflow = true;
		}
		break;
	case SOURCE_INVALIDATE_END:
		/*
		 * Always passed on, even when none of the listed ksubs is held
		 * or live any more: the broker pairs by event id, and the event
		 * may still be in flight there although its ksubs went (a
		 * RELEASE of the exiting target read before the END, a ksub
		 * revoked or deleted meanwhile).  Dropping the END would leave
		 * the event open until the broker's last-resort END timer.  An
		 * END of an event the broker does not know is ignored there.
		 */
		ev.nsubs = filter_live(ks, ks->subs, ev.nsubs, rx);
		break;
	case SOURCE_RELEASE:
	case SOURCE_REVOKED:
		k = ksub_for(ks, ev.subs[0].ksub_id, rx);
		if (!k || k->dead)
			return;
		k->dead = true;
		if (ev.kind == SOURCE_REVOKED)
			ks->stats.desync_revokes++;
		break;
	case SOURCE_LOST:
		return;
	}
	ks->base.emit(&ev, ks->base.userdata);
}

static void handle_message(struct kmod_source *ks, struct nlmsghdr *nlh, uint64_t rx)
{
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(nlh);

		if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
			return;
		if (is_orphan(ks, nlh->nlmsg_seq, true))
			return; /* an abandoned SUBSCRIBE: nothing to count */
		if (e->error == -ENOENT) {
			ks->stats.stale_acks++; /* a late ACK, or a ksub already gone */
		} else if (e->error) {
			ks->stats.request_errors++;
			take_extack(ks, nlh);
			if (mmn__ratelimit_ok(&ks->rl, now_ms()))
				mmn__log(LOG_WARNING, NULL, "kmod: request refused: %s%s%s", strerror(-e->error),
					 ks->extack[0] ? ": " : "", ks->extack);
		}
		return;
	}
	if (nlh->nlmsg_type == GENL_ID_CTRL) {
		ctrl_message(ks, nlh);
		return;
	}
	if (nlh->nlmsg_type != ks->family || !genlmsg_valid_hdr(nlh, 0))
		return;
	if (genlmsg_hdr(nlh)->cmd == MMN_CMD_SUBSCRIBE) { /* a late SUBSCRIBE answer */
		struct nlattr *tb[MMN_A_MAX + 1];

		if (is_orphan(ks, nlh->nlmsg_seq, true) && genlmsg_parse(nlh, 0, tb, MMN_A_MAX, mmn__kmod_ev_policy) == 0 &&
		    tb[MMN_A_SUB_ID])
			send_sub_cmd(ks, MMN_CMD_UNSUBSCRIBE, nla_get_u32(tb[MMN_A_SUB_ID]), -1);
		return;
	}
	event_message(ks, nlh, rx);
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
		lost(ks, ks->fatal);
		return;
	}
	if (ks->overrun_pending) {
		ks->overrun_pending = false;
		overrun(ks);
	}
	while ((b = ks->bl_head) && !ks->lost) {
		ks->bl_head = b->next;
		if (!ks->bl_head)
			ks->bl_tail = &ks->bl_head;
		handle_datagram(ks, b->data, b->len, b->rx); /* may append (ksub_add in emit) */
		free(b);
	}
}

static void on_idle(uv_idle_t *h)
{
	struct kmod_source *ks = h->data;

	uv_idle_stop(h);
	drain_backlog(ks);
}

static void on_poll(uv_poll_t *h, int status, int events)
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
			lost(ks, err ? -err : status);
			return;
		}
		if (err == ENOBUFS)
			overrun(ks);
		if (ks->lost || uv_poll_start(&ks->poll, UV_READABLE, on_poll) < 0) {
			lost(ks, status);
			return;
		}
	}
	drain_backlog(ks); /* keep the kernel's order */
	for (int budget = KMOD_RECV_BUDGET; budget > 0 && !ks->lost; budget--) {
		ssize_t n = recv_one(ks, ks->rxbuf);

		if (n == 0)
			break;
		if (n == -ENOBUFS) {
			overrun(ks);
			continue;
		}
		if (n < 0) {
			lost(ks, (int)n);
			break;
		}
		handle_datagram(ks, ks->rxbuf, (size_t)n, ks->rx);
		if (ks->bl_head) /* a ksub_add during emit read ahead */
			drain_backlog(ks);
	}
}

/* ---- source_ops ---------------------------------------------------------- */

static int kmod_start(struct source *s)
{
	struct kmod_source *ks = to_ks(s);
	int r;

	if (ks->lost)
		return -ENODEV;
	r = uv_poll_start(&ks->poll, UV_READABLE, on_poll);
	if (r < 0)
		return r;
	ks->started = true;
	if (ks->bl_head || ks->overrun_pending || ks->fatal)
		uv_idle_start(&ks->idle, on_idle);
	return 0;
}

static int pidfd_alive(int pidfd)
{
	if (pidfd < 0)
		return 0;
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0 && errno == ESRCH)
		return -ESRCH;
	return 0;
}

static int kmod_ksub_add(struct source *s, const struct source_target *t, uint64_t start, uint64_t length,
			 bool blocking, uint32_t timeout_ms, uint32_t *ksub_id)
{
	struct kmod_source *ks = to_ks(s);
	struct nl_msg *msg;
	uint64_t born = 0;
	uint32_t id = 0;
	int r;

	if (ks->lost)
		return -ENODEV;
	if (t->pid <= 0 || length == 0)
		return -EINVAL;
	msg = req_new(ks, MMN_CMD_SUBSCRIBE);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, MMN_A_PID, (uint32_t)t->pid) < 0 || nla_put_u64(msg, MMN_A_START, start) < 0 ||
	    nla_put_u64(msg, MMN_A_LENGTH, length) < 0 ||
	    nla_put_u32(msg, MMN_A_SUB_FLAGS, blocking ? MMN_SUB_F_BLOCKING : 0) < 0 ||
	    (timeout_ms && nla_put_u32(msg, MMN_A_TIMEOUT_MS,
				       timeout_ms < MMN_ACK_TIMEOUT_MAX_MS ? timeout_ms : MMN_ACK_TIMEOUT_MAX_MS) < 0)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	r = transact(ks, msg, &id, &born);
	nlmsg_free(msg);
	if (r < 0) {
		if (ks->extack[0])
			mmn__log(LOG_DEBUG, NULL, "kmod: SUBSCRIBE pid %d: %s: %s", (int)t->pid, strerror(-r),
				 ks->extack);
		return r;
	}
	/*
	 * The module resolved the pid number; if the process the broker's pidfd
	 * names is still alive now, it was alive then, and the number was its.
	 */
	r = pidfd_alive(t->pidfd);
	if (r == 0)
		r = ksub_insert(ks, id, blocking, born);
	if (r < 0) {
		send_sub_cmd(ks, MMN_CMD_UNSUBSCRIBE, id, -1);
		return r;
	}
	*ksub_id = id;
	return 0;
}

static int kmod_ksub_del(struct source *s, uint32_t ksub_id)
{
	struct kmod_source *ks = to_ks(s);
	struct ksub_slot *k = ksub_find(ks, ksub_id);

	if (!k)
		return -ENOENT;
	ksub_remove(ks, k);
	if (ks->lost)
		return 0;
	return send_sub_cmd(ks, MMN_CMD_UNSUBSCRIBE, ksub_id, -1);
}

static int kmod_ksub_set_blocking(struct source *s, uint32_t ksub_id, bool blocking)
{
	struct kmod_source *ks = to_ks(s);
	struct ksub_slot *k = ksub_find(ks, ksub_id);

	if (!k)
		return -ENOENT;
	if (k->blocking == blocking)
		return 0;
	k->blocking = blocking;
	if (ks->lost)
		return -ENODEV;
	return send_sub_cmd(ks, MMN_CMD_SET_FLAGS, ksub_id, blocking ? MMN_SUB_F_BLOCKING : 0);
}

static int kmod_ksub_resynced(struct source *s, uint32_t ksub_id)
{
	struct kmod_source *ks = to_ks(s);
	struct ksub_slot *k = ksub_find(ks, ksub_id);

	if (!k)
		return -ENOENT;
	if (ks->lost)
		return -ENODEV;
	k->dead = false;
	return send_sub_cmd(ks, MMN_CMD_SET_FLAGS, ksub_id,
			    (k->blocking ? MMN_SUB_F_BLOCKING : 0) | MMN_SUB_F_RESYNCED);
}

static int kmod_ack(struct source *s, uint64_t event_id)
{
	struct kmod_source *ks = to_ks(s);

	if (!awaiting_take(ks, event_id))
		return -ENOENT;
	if (ks->lost)
		return 0; /* the socket is gone: the module released the wait */
	return send_ack(ks, event_id);
}

static int kmod_attach_uffd(struct source *s, const struct source_target *t, int fd)
{
	return -EOPNOTSUPP;
}

static void kmod_detach_uffd(struct source *s, pid_t pid, uint64_t conn)
{
}

static void free_ks(struct kmod_source *ks)
{
	struct backlog *b;

	while ((b = ks->bl_head)) {
		ks->bl_head = b->next;
		free(b);
	}
	if (ks->ack_msg)
		nlmsg_free(ks->ack_msg);
	if (ks->sk)
		nl_socket_free(ks->sk);
	free(ks->rxbuf);
	free(ks->syncbuf);
	free(ks->ksubs);
	free(ks->subs);
	free(ks);
}

static void on_close(uv_handle_t *h)
{
	struct kmod_source *ks = h->data;

	if (--ks->open_handles == 0)
		free_ks(ks);
}

static void kmod_destroy(struct source *s)
{
	struct kmod_source *ks = to_ks(s);

	if (!ks->lost) {
		struct nl_msg *msg = req_new(ks, MMN_CMD_UNBIND);

		if (msg) {
			req_send(ks, msg);
			nlmsg_free(msg);
		}
	}
	/*
	 * uv_close() takes the fd out of epoll at once, so the socket can close
	 * now: the module sees NETLINK_URELEASE and releases every waiter even
	 * if the loop never runs again.  The struct goes in the close callbacks.
	 */
	uv_close((uv_handle_t *)&ks->poll, on_close);
	uv_close((uv_handle_t *)&ks->idle, on_close);
	nl_socket_free(ks->sk);
	ks->sk = NULL;
	ks->fd = -1;
}

static const struct source_ops kmod_ops = {
	.start = kmod_start,
	.ksub_add = kmod_ksub_add,
	.ksub_del = kmod_ksub_del,
	.ksub_set_blocking = kmod_ksub_set_blocking,
	.ksub_resynced = kmod_ksub_resynced,
	.ack = kmod_ack,
	.attach_uffd = kmod_attach_uffd,
	.detach_uffd = kmod_detach_uffd,
	.destroy = kmod_destroy,
};

int mmn__source_kmod_stats(struct source *s, struct kmod_stats *out)
{
	if (!s || s->ops != &kmod_ops)
		return -EINVAL;
	*out = to_ks(s)->stats;
	return 0;
}

/* Socket options; a failure of the optional ones is not fatal. */
static int setup_socket(struct kmod_source *ks)
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
	return r < 0 ? nlerr(r) : 0;
}

static int build_ack(struct kmod_source *ks)
{
	ks->ack_msg = req_new(ks, MMN_CMD_ACK);
	if (!ks->ack_msg || nla_put_u64(ks->ack_msg, MMN_A_SEQ, 0) < 0)
		return -ENOMEM;
	ks->ack_seq = nlmsg_find_attr(nlmsg_hdr(ks->ack_msg), GENL_HDRLEN, MMN_A_SEQ);
	return ks->ack_seq ? 0 : -EIO;
}

/*
 * Connect @ks's socket to the module's genetlink family and BIND, so the
 * module sends its events to this socket.  0 or negative errno (-ENOENT:
 * no module).  On failure the caller frees @ks.
 */
static int kmod_connect(struct kmod_source *ks)
{
	struct nl_msg *msg;
	int r;

	r = genl_connect(ks->sk);
	if (r < 0)
		return nlerr(r);
	ks->fd = nl_socket_get_fd(ks->sk);
	ks->portid = nl_socket_get_local_port(ks->sk);
	ks->family = genl_ctrl_resolve(ks->sk, MMN_GENL_NAME);
	if (ks->family < 0)
		return ks->family == -NLE_OBJ_NOTFOUND ? -ENOENT : nlerr(ks->family);
	r = setup_socket(ks);
	if (r < 0)
		return r;
	r = build_ack(ks);
	if (r < 0)
		return r;

	msg = req_new(ks, MMN_CMD_BIND);
	if (!msg)
		return -ENOMEM;
	r = transact(ks, msg, NULL, NULL);
	nlmsg_free(msg);
	if (r < 0) {
		mmn__log(LOG_DEBUG, NULL, "kmod: BIND: %s%s%s", strerror(-r), ks->extack[0] ? ": " : "",
			 ks->extack);
		return r;
	}
	return 0;
}

int mmn__source_kmod_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out)
{
	struct kmod_source *ks = calloc(1, sizeof(*ks));
	struct nl_msg *msg;
	int r;

	if (!ks)
		return -ENOMEM;
	ks->fd = -1;
	ks->bl_tail = &ks->bl_head;
	ks->rl = (struct ratelimit)RATELIMIT_INIT(5000, 10);
	ks->ksub_cap = 64;
	ks->subs_cap = 64;
	ks->ksubs = calloc(ks->ksub_cap, sizeof(*ks->ksubs));
	ks->subs = calloc(ks->subs_cap, sizeof(*ks->subs));
	ks->rxbuf = malloc(KMOD_RXBUF);
	ks->syncbuf = malloc(KMOD_RXBUF);
	ks->sk = nl_socket_alloc();
	r = -ENOMEM;
	if (!ks->ksubs || !ks->subs || !ks->rxbuf || !ks->syncbuf || !ks->sk)
		goto err;
	r = kmod_connect(ks);
	if (r < 0)
		goto err;

	r = uv_poll_init(loop, &ks->poll, ks->fd);
	if (r < 0)
		goto err_unbind;
	ks->poll.data = ks;
	ks->open_handles++;
	uv_idle_init(loop, &ks->idle);
	ks->idle.data = ks;
	ks->open_handles++;

	ks->base.ops = &kmod_ops;
	ks->base.caps = (struct source_caps){
		.name = "kmod",
		.event_mask = KMOD_EVENT_MASK,
		.acks_hold_kernel = true,
		.events_before_change = true,
		.needs_uffd = false,
		.other_processes = true,
		.end_covers_earlier = true,
	};
	ks->base.loop = loop;
	ks->base.emit = emit;
	ks->base.userdata = userdata;
	*out = &ks->base;
	return 0;

err_unbind:
	msg = req_new(ks, MMN_CMD_UNBIND);
	if (msg) {
		req_send(ks, msg);
		nlmsg_free(msg);
	}
err:
	free_ks(ks);
	return r;
}
