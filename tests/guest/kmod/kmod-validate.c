// SPDX-License-Identifier: GPL-2.0
/*
 * Validation and permissions: every bad SUBSCRIBE gets its errno and an
 * extack message; strict attribute validation; one bound daemon; commands
 * only from the bound port; CAP_SYS_ADMIN (and CAP_NET_ADMIN) required;
 * max_subs; 10,000 bad requests add nothing to the kernel log.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netlink/attr.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include "kt.h"
#include "lib/klog.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE

static struct drv *d;
static struct target t;
static uint64_t base;

static void bad_sub(pid_t pid, uint64_t start, uint64_t len, uint32_t flags, int err,
		    const char *what)
{
	int r = drv_subscribe(d, pid, start, len, flags, 0, NULL);

	tap_is_int(r, err, what);
	if (r)
		tap_ok(drv_extack(d)[0] != 0, "  with an extack message (\"%s\")", drv_extack(d));
}

static int raw_subscribe(void (*fill)(struct nl_msg *m))
{
	struct nl_msg *m = drv_msg(d, MMN_CMD_SUBSCRIBE);

	nla_put_u32(m, MMN_A_PID, (uint32_t)t.pid);
	nla_put_u64(m, MMN_A_START, base);
	nla_put_u64(m, MMN_A_LENGTH, P);
	fill(m);
	return drv_request(d, m);
}

static void fill_unknown(struct nl_msg *m)
{
	nla_put_u32(m, MMN_A_MAX + 5, 1);
}

static void fill_foreign(struct nl_msg *m)
{
	nla_put_u64(m, MMN_A_SEQ, 1);
}

static void fill_badlen(struct nl_msg *m)
{
	nla_put_u64(m, MMN_A_SUB_FLAGS, 0);
}

static void fill_badtimeout(struct nl_msg *m)
{
	nla_put_u32(m, MMN_A_TIMEOUT_MS, 20000);
}

static void fill_reserved(struct nl_msg *m)
{
	struct genlmsghdr *g = nlmsg_data(nlmsg_hdr(m));

	g->reserved = 1;
}

static void t_subscribe_input(void)
{
	uint32_t id;

	bad_sub(t.pid, base, 0, 0, -EINVAL, "length 0 -> EINVAL");
	bad_sub(t.pid, base + 1, P, 0, -EINVAL, "unaligned start -> EINVAL");
	bad_sub(t.pid, base, P + 1, 0, -EINVAL, "unaligned length -> EINVAL");
	bad_sub(t.pid, 0xfffffffffffff000ULL, 2 * P, 0, -EOVERFLOW, "start + length overflows -> EOVERFLOW");
	bad_sub(t.pid, 0x7ffffffff000ULL, 2 * P, 0, -EINVAL, "end beyond task size -> EINVAL");
	bad_sub(4194301, base, P, 0, -ESRCH, "unknown pid -> ESRCH");
	bad_sub(2, base, P, 0, -EINVAL, "kernel thread (kthreadd) -> EINVAL");
	bad_sub(getpid(), base, P, 0, -EINVAL, "the daemon's own mm -> EINVAL");
	bad_sub(t.pid, base, P, 1U << 7, -EOPNOTSUPP, "unknown flag bits -> EOPNOTSUPP");
	bad_sub(t.pid, base, P, MMN_SUB_F_RESYNCED, -EINVAL, "RESYNCED on SUBSCRIBE -> EINVAL");
	tap_is_int(raw_subscribe(fill_unknown), -EINVAL, "unknown attribute -> EINVAL");
	tap_is_int(raw_subscribe(fill_foreign), -EINVAL, "attribute of another command -> EINVAL");
	tap_is_int(raw_subscribe(fill_badlen), -EINVAL, "u64 where u32 is due -> EINVAL");
	tap_is_int(raw_subscribe(fill_badtimeout), -ERANGE, "timeout above 10000 ms -> ERANGE (policy range)");
	tap_is_int(raw_subscribe(fill_reserved), -EINVAL, "genlmsghdr.reserved != 0 -> EINVAL");

	struct nl_msg *m = drv_msg(d, MMN_CMD_SUBSCRIBE);

	nla_put_u64(m, MMN_A_START, base);
	nla_put_u64(m, MMN_A_LENGTH, P);
	tap_is_int(drv_request(d, m), -EINVAL, "missing PID -> EINVAL");

	tap_is_int(drv_subscribe(d, t.pid, base, P, 0, 0, &id), 0, "a good SUBSCRIBE still works");
	tap_ok(id > 0 && id < (1U << 24), "ids are small handles, not pointers (%u)", id);
	tap_is_int(drv_set_flags(d, id, 1U << 9), -EOPNOTSUPP, "SET_FLAGS unknown bits -> EOPNOTSUPP");
	tap_is_int(drv_set_flags(d, id + 1000, 0), -ENOENT, "SET_FLAGS unknown id -> ENOENT");
	tap_is_int(drv_unsubscribe(d, id + 1000), -ENOENT, "UNSUBSCRIBE unknown id -> ENOENT");
	tap_is_int(drv_unsubscribe(d, id), 0, "UNSUBSCRIBE");
	tap_is_int(drv_unsubscribe(d, id), -ENOENT, "UNSUBSCRIBE twice -> ENOENT");
}

static void t_binding(void)
{
	struct drv *o = drv_open();
	uint64_t st[MMN_STATS_A_MAX + 1];
	struct drv_sub s[1];

	tap_require(o);
	tap_is_int(drv_bind(o, 0), -EBUSY, "second BIND -> EBUSY");
	tap_is_int(drv_subscribe(o, t.pid, base, P, 0, 0, NULL), -EPERM,
		   "SUBSCRIBE from another port -> EPERM");
	tap_is_int(drv_ack(o, 1), -EPERM, "ACK from another port -> EPERM");
	tap_is_int(drv_stats(o, st), -EPERM, "GET_STATS from another port -> EPERM");
	tap_is_int(drv_subs(o, s, 1), -EPERM, "GET_SUBS from another port -> EPERM");
	tap_is_int(drv_unbind(o), -EPERM, "UNBIND from another port -> EPERM");
	tap_is_int(drv_stats(d, st), 0, "the bound daemon is still bound");
	drv_close(o);
	/* its NETLINK_URELEASE is not the daemon's port: skipped */
	tap_is_int(drv_stats(d, st), 0, "closing another genl socket leaves the daemon bound");
}

/* In a child: drop privileges as told, then try BIND; exit with -errno. */
static int try_bind_as(int how)
{
	pid_t p = fork();
	int st;

	if (p == 0) {
		struct drv *x;

		if (how == 0) {
			if (setgid(65534) || setuid(65534))
				_exit(100);
		} else {
			cap_t c = cap_from_text("cap_net_admin=ep");

			if (!c || cap_set_proc(c))
				_exit(101);
		}
		x = drv_open();
		if (!x)
			_exit(102);
		_exit(-drv_bind(x, 0));
	}
	if (waitpid(p, &st, 0) != p || !WIFEXITED(st))
		return -1000;
	return -WEXITSTATUS(st);
}

/* In a child in a new network namespace: can the family be resolved? */
static int netns_open(void)
{
	pid_t p = fork();
	int st;

	if (p == 0) {
		struct drv *x;

		if (unshare(CLONE_NEWNET))
			_exit(100);
		x = drv_open();
		_exit(x ? 0 : errno == ENOENT ? 2 : 101);
	}
	if (waitpid(p, &st, 0) != p || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void t_permissions(void)
{
	tap_is_int(netns_open(), 2, "family invisible outside the initial netns (ENOENT)");
	tap_is_int(drv_unbind(d), 0, "UNBIND (free the slot)");
	tap_is_int(try_bind_as(0), -EPERM, "BIND as nobody -> EPERM");
	tap_is_int(try_bind_as(1), -EPERM, "BIND with CAP_NET_ADMIN but not CAP_SYS_ADMIN -> EPERM");
	tap_is_int(drv_bind(d, 0), 0, "BIND again as root");
}

static void t_max_subs(void)
{
	const char *p = "/sys/module/mmn/parameters/max_subs";
	uint32_t ids[4];
	int i, ok = 0;

	tap_require(knob_write(p, "3") == 0);
	for (i = 0; i < 3; i++)
		ok += drv_subscribe(d, t.pid, base + i * P, P, 0, 0, &ids[i]) == 0;
	tap_is_int(ok, 3, "three subscriptions under max_subs=3");
	tap_is_int(drv_subscribe(d, t.pid, base + 3 * P, P, 0, 0, NULL), -ENOSPC,
		   "the fourth -> ENOSPC");
	tap_ok(strstr(drv_extack(d), "max_subs") != NULL, "extack names max_subs");
	tap_is_int(drv_unsubscribe(d, ids[0]), 0, "unsubscribe one");
	tap_is_int(drv_subscribe(d, t.pid, base + 3 * P, P, 0, 0, &ids[0]), 0,
		   "then there is room again");
	for (i = 0; i < 3; i++)
		drv_unsubscribe(d, ids[i]);
	knob_write(p, "4096");
}

static void t_quiet(void)
{
	int fd = klog_open();
	struct drv *o = drv_open();
	uint64_t b0 = kt_stat(d, MMN_STATS_A_BAD_REQUESTS);
	int i, bad = 0;

	tap_require(fd >= 0 && o);
	for (i = 0; i < 10000; i++) {
		int r;

		switch (i % 5) {
		case 0:
			r = drv_subscribe(d, t.pid, base + 1, P, 0, 0, NULL);
			break;
		case 1:
			r = drv_subscribe(o, t.pid, base, P, 0, 0, NULL);
			break;
		case 2:
			r = drv_ack(d, 1ULL << 60);
			break;
		case 3:
			r = raw_subscribe(fill_unknown);
			break;
		default:
			r = drv_subscribe(d, 4194301, base, P, 0, 0, NULL);
		}
		bad += r < 0;
	}
	tap_is_int(bad, 10000, "10,000 bad requests all rejected");
	tap_is_int(klog_new(fd), 0, "and the kernel log got no new line");
	tap_ok(kt_stat(d, MMN_STATS_A_BAD_REQUESTS) - b0 >= 6000, "counted in BAD_REQUESTS");
	drv_close(o);
	close(fd);
}

int main(void)
{
	struct target_res r;

	d = kt_bind(0);
	tap_require(d);
	tap_require(target_op_start(&t) == 0);
	tap_require(target_op_do(&t, T_MMAP, 0, 16 * P, 0, &r) == 0);
	base = r.val;
	t_subscribe_input();
	t_binding();
	t_permissions();
	t_max_subs();
	t_quiet();
	target_op_stop(&t);
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
