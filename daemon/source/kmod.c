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

#include "log.h"
#include "source/kmod-channel.h"
#include "source/kmod-event.h"
#include "source/kmod-genl.h"
#include "source/kmod-ksub.h"
#include "source/kmod-receive.h"
#include "source/kmod-source.h"
#include "source/source.h"

/* ---- source_ops ---------------------------------------------------------- */

static int kmod_start(struct source *s)
{
	struct kmod_source *ks = to_ks(s);
	int r;

	if (ks->lost)
		return -ENODEV;
	r = uv_poll_start(&ks->poll, UV_READABLE, mmn__kmod_on_poll);
	if (r < 0)
		return r;
	ks->started = true;
	if (ks->bl_head || ks->overrun_pending || ks->fatal)
		uv_idle_start(&ks->idle, mmn__kmod_on_idle);
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
	msg = mmn__kmod_req_new(ks, MMN_CMD_SUBSCRIBE);
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
	r = mmn__kmod_transact(ks, msg, &id, &born);
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
		r = mmn__kmod_ksub_insert(ks, id, blocking, born);
	if (r < 0) {
		mmn__kmod_send_sub_cmd(ks, MMN_CMD_UNSUBSCRIBE, id, -1);
		return r;
	}
	*ksub_id = id;
	return 0;
}

static int kmod_ksub_del(struct source *s, uint32_t ksub_id)
{
	struct kmod_source *ks = to_ks(s);
	struct ksub_slot *k = mmn__kmod_ksub_find(ks, ksub_id);

	if (!k)
		return -ENOENT;
	mmn__kmod_ksub_remove(ks, k);
	if (ks->lost)
		return 0;
	return mmn__kmod_send_sub_cmd(ks, MMN_CMD_UNSUBSCRIBE, ksub_id, -1);
}

static int kmod_ksub_set_blocking(struct source *s, uint32_t ksub_id, bool blocking)
{
	struct kmod_source *ks = to_ks(s);
	struct ksub_slot *k = mmn__kmod_ksub_find(ks, ksub_id);

	if (!k)
		return -ENOENT;
	if (k->blocking == blocking)
		return 0;
	k->blocking = blocking;
	if (ks->lost)
		return -ENODEV;
	return mmn__kmod_send_sub_cmd(ks, MMN_CMD_SET_FLAGS, ksub_id, blocking ? MMN_SUB_F_BLOCKING : 0);
}

static int kmod_ksub_resynced(struct source *s, uint32_t ksub_id)
{
	struct kmod_source *ks = to_ks(s);
	struct ksub_slot *k = mmn__kmod_ksub_find(ks, ksub_id);

	if (!k)
		return -ENOENT;
	if (ks->lost)
		return -ENODEV;
	k->dead = false;
	return mmn__kmod_send_sub_cmd(ks, MMN_CMD_SET_FLAGS, ksub_id,
			    (k->blocking ? MMN_SUB_F_BLOCKING : 0) | MMN_SUB_F_RESYNCED);
}

static int kmod_ack(struct source *s, uint64_t event_id)
{
	struct kmod_source *ks = to_ks(s);

	if (!mmn__kmod_awaiting_take(ks, event_id))
		return -ENOENT;
	if (ks->lost)
		return 0; /* the socket is gone: the module released the wait */
	return mmn__kmod_send_ack(ks, event_id);
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
		struct nl_msg *msg = mmn__kmod_req_new(ks, MMN_CMD_UNBIND);

		if (msg) {
			mmn__kmod_req_send(ks, msg);
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
		return mmn__kmod_nlerr(r);
	ks->fd = nl_socket_get_fd(ks->sk);
	ks->portid = nl_socket_get_local_port(ks->sk);
	ks->family = genl_ctrl_resolve(ks->sk, MMN_GENL_NAME);
	if (ks->family < 0)
		return ks->family == -NLE_OBJ_NOTFOUND ? -ENOENT : mmn__kmod_nlerr(ks->family);
	r = mmn__kmod_setup_socket(ks);
	if (r < 0)
		return r;
	r = mmn__kmod_build_ack(ks);
	if (r < 0)
		return r;

	msg = mmn__kmod_req_new(ks, MMN_CMD_BIND);
	if (!msg)
		return -ENOMEM;
	r = mmn__kmod_transact(ks, msg, NULL, NULL);
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
	ks->drain_cb = mmn__kmod_on_idle;
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
		/* A THP's size: one notifier per 2 MiB region at most, few for a big mapping. */
		.ksub_granule = UINT64_C(2) << 20,
	};
	ks->base.loop = loop;
	ks->base.emit = emit;
	ks->base.userdata = userdata;
	*out = &ks->base;
	return 0;

err_unbind:
	msg = mmn__kmod_req_new(ks, MMN_CMD_UNBIND);
	if (msg) {
		mmn__kmod_req_send(ks, msg);
		nlmsg_free(msg);
	}
err:
	free_ks(ks);
	return r;
}
