/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source on the host, without the module: the parser of the
 * module's events, fed with messages built by libnl exactly as the kernel
 * lays them out (<linux/mmn.h>), and the constructor's answer when the family
 * does not resolve.  The source against the real module runs in the guest
 * (tests/guest/daemon).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <linux/mmn.h>
#include <netlink/attr.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <uv.h>

#include "kmod-genl.h"
#include "source.h"
#include "mmn.pb-c.h"
#include "tap.h"

#define FAMILY 0x1d /* any dynamic genl family id */

struct sub_spec {
	uint32_t id;
	uint64_t start, end;
	int omit; /* 1: no START, 2: no END */
};

static struct nl_msg *msg_new(uint8_t cmd)
{
	struct nl_msg *m = nlmsg_alloc();

	if (!m || !genlmsg_put(m, 0, 0, FAMILY, 0, 0, cmd, MMN_GENL_VERSION))
		abort();
	return m;
}

static void put_subs(struct nl_msg *m, const struct sub_spec *s, size_t n, int ranges)
{
	struct nlattr *nest = nla_nest_start(m, MMN_A_SUBS);

	for (size_t i = 0; i < n; i++) {
		struct nlattr *one = nla_nest_start(m, MMN_A_SUB);

		nla_put_u32(m, MMN_A_SUB_ID, s[i].id);
		if (ranges && s[i].omit != 1)
			nla_put_u64(m, MMN_A_START, s[i].start);
		if (ranges && s[i].omit != 2)
			nla_put_u64(m, MMN_A_END, s[i].end);
		nla_nest_end(m, one);
	}
	nla_nest_end_keep_empty(m, nest); /* the kernel keeps empty nests too */
}

/* An INVALIDATE as the module sends it; @omit_seq leaves out MMN_A_SEQ. */
static struct nl_msg *invalidate(uint64_t seq, uint32_t event, uint32_t flags, const struct sub_spec *s, size_t n,
				 int omit_seq)
{
	struct nl_msg *m = msg_new(MMN_CMD_INVALIDATE);

	if (!omit_seq)
		nla_put_u64(m, MMN_A_SEQ, seq);
	nla_put_u32(m, MMN_A_EVENT, event);
	nla_put_u32(m, MMN_A_EVENT_FLAGS, flags);
	nla_put_u64(m, MMN_A_RANGE_START, 0x10000);
	nla_put_u64(m, MMN_A_RANGE_END, 0x90000);
	nla_put_u32(m, MMN_A_PID, 4242);
	put_subs(m, s, n, 1);
	return m;
}

static int parse(struct nl_msg *m, struct source_event *ev, struct source_event_sub *subs, size_t cap,
		 size_t *needed)
{
	int r = mmn__kmod_parse_event(nlmsg_hdr(m), ev, subs, cap, needed);

	nlmsg_free(m);
	return r;
}

static void test_invalidate(void)
{
	const struct sub_spec s[] = {
		{ 7, 0x10000, 0x20000, 0 }, { 9, 0x40000, 0x48000, 0 }, { 1u << 31, 0x80000, 0x90000, 0 }
	};
	struct source_event_sub subs[8];
	struct source_event ev;
	size_t need;
	int r;

	r = parse(invalidate(0x1234567890ull, MMN_EVENT_UNMAP, MMN_EV_F_BLOCKABLE | MMN_EV_F_NEEDS_ACK, s, 3, 0),
		  &ev, subs, 8, &need);
	tap_is_int(r, 0, "INVALIDATE with three subscriptions parses");
	tap_is_int(ev.kind, SOURCE_INVALIDATE, "kind is SOURCE_INVALIDATE");
	tap_is_u64(ev.event_id, 0x1234567890ull, "event_id is MMN_A_SEQ");
	tap_is_int(ev.event, MMN_EVENT_UNMAP, "event is UNMAP");
	tap_ok(ev.blockable && ev.needs_ack && !ev.refused, "flags: blockable, needs_ack, not refused");
	tap_is_u64(ev.range_start, 0x10000, "unclipped range start");
	tap_is_u64(ev.range_end, 0x90000, "unclipped range end");
	tap_is_int(ev.pid, 4242, "target pid");
	tap_is_int(ev.nsubs, 3, "three touched subscriptions");
	tap_ok(ev.subs == subs, "subscriptions land in the caller's array");
	tap_ok(subs[0].ksub_id == 7 && subs[0].start == 0x10000 && subs[0].end == 0x20000, "first sub clipped range");
	tap_ok(subs[1].ksub_id == 9 && subs[1].start == 0x40000 && subs[1].end == 0x48000, "second sub");
	tap_is_u64(subs[2].ksub_id, 1u << 31, "large sub id survives");

	r = parse(invalidate(5, MMN_EVENT_UNMAP, MMN_EV_F_NEEDS_ACK | MMN_EV_F_BLOCKABLE, s, 3, 0), &ev, subs, 2,
		  &need);
	tap_is_int(r, -ENOSPC, "too small an array: -ENOSPC");
	tap_is_int(need, 3, "... and the count needed");

	r = parse(invalidate(6, MMN_EVENT_UNMAP, MMN_EV_F_REFUSED, s, 1, 0), &ev, subs, 8, &need);
	tap_ok(r == 0 && !ev.blockable && !ev.needs_ack && ev.refused, "non-blockable refused event");

	r = parse(invalidate(6, 42, MMN_EV_F_BLOCKABLE, s, 1, 0), &ev, subs, 8, &need);
	tap_ok(r == 0 && ev.event == MMN_EVENT_CLEAR, "an unknown kernel event is reported as CLEAR");

	r = parse(invalidate(6, MMN_EVENT_SOFT_DIRTY, 0, s, 0, 0), &ev, subs, 8, &need);
	tap_ok(r == 0 && ev.nsubs == 0 && ev.event == MMN_EVENT_SOFT_DIRTY, "an empty SUBS nest parses");

	{
		struct nl_msg *m = msg_new(MMN_CMD_INVALIDATE); /* no SUBS at all */

		nla_put_u64(m, MMN_A_SEQ, 1);
		nla_put_u32(m, MMN_A_EVENT, 0);
		nla_put_u32(m, MMN_A_EVENT_FLAGS, 0);
		tap_is_int(parse(m, &ev, subs, 8, &need), -EBADMSG, "no SUBS: -EBADMSG");
	}
}

static void test_malformed(void)
{
	const struct sub_spec ok[] = { { 3, 0x1000, 0x2000, 0 } };
	const struct sub_spec nostart[] = { { 3, 0x1000, 0x2000, 1 } };
	const struct sub_spec noend[] = { { 3, 0x1000, 0x2000, 2 } };
	const struct sub_spec empty[] = { { 3, 0x2000, 0x2000, 0 } };
	struct source_event_sub subs[4];
	struct source_event ev;
	struct nl_msg *m;
	size_t need;

	tap_is_int(parse(invalidate(1, 0, 0, ok, 1, 1), &ev, subs, 4, &need), -EBADMSG, "no SEQ: -EBADMSG");
	tap_is_int(parse(invalidate(1, 0, 0, nostart, 1, 0), &ev, subs, 4, &need), -EBADMSG,
		   "a sub without START: -EBADMSG");
	tap_is_int(parse(invalidate(1, 0, 0, noend, 1, 0), &ev, subs, 4, &need), -EBADMSG,
		   "a sub without END: -EBADMSG");
	tap_is_int(parse(invalidate(1, 0, 0, empty, 1, 0), &ev, subs, 4, &need), -EBADMSG,
		   "a sub with end <= start: -EBADMSG");

	m = msg_new(MMN_CMD_INVALIDATE); /* SEQ as a u32: wrong size */
	nla_put_u32(m, MMN_A_SEQ, 1);
	nla_put_u32(m, MMN_A_EVENT, 0);
	nla_put_u32(m, MMN_A_EVENT_FLAGS, 0);
	put_subs(m, ok, 1, 1);
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "a 4-byte SEQ: -EBADMSG");

	m = msg_new(MMN_CMD_INVALIDATE); /* no EVENT_FLAGS */
	nla_put_u64(m, MMN_A_SEQ, 1);
	nla_put_u32(m, MMN_A_EVENT, 0);
	put_subs(m, ok, 1, 1);
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "no EVENT_FLAGS: -EBADMSG");

	m = msg_new(MMN_CMD_INVALIDATE); /* SUBS holding something else than SUB */
	nla_put_u64(m, MMN_A_SEQ, 1);
	nla_put_u32(m, MMN_A_EVENT, 0);
	nla_put_u32(m, MMN_A_EVENT_FLAGS, 0);
	{
		struct nlattr *n = nla_nest_start(m, MMN_A_SUBS);

		nla_put_u32(m, MMN_A_SUB_ID, 3);
		nla_nest_end(m, n);
	}
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "a SUBS nest of non-SUB attributes: -EBADMSG");

	m = msg_new(MMN_CMD_SUBSCRIBE); /* a reply, not an event */
	nla_put_u32(m, MMN_A_SUB_ID, 3);
	tap_is_int(parse(m, &ev, subs, 4, &need), -EOPNOTSUPP, "a SUBSCRIBE reply is not an event");

	m = nlmsg_alloc_simple(FAMILY, 0); /* no genl header at all */
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "no genl header: -EBADMSG");
}

static void test_end_release_revoked(void)
{
	const struct sub_spec s[] = { { 11, 0, 0, 0 }, { 12, 0, 0, 0 } };
	struct source_event_sub subs[4];
	struct source_event ev;
	struct nl_msg *m;
	size_t need;

	m = msg_new(MMN_CMD_INVALIDATE_END);
	nla_put_u64(m, MMN_A_SEQ, 77);
	put_subs(m, s, 2, 0);
	tap_is_int(parse(m, &ev, subs, 4, &need), 0, "INVALIDATE_END parses");
	tap_ok(ev.kind == SOURCE_INVALIDATE_END && ev.event_id == 77 && ev.nsubs == 2 && subs[0].ksub_id == 11 &&
		       subs[1].ksub_id == 12,
	       "INVALIDATE_END: same seq, both subscription ids");

	m = msg_new(MMN_CMD_INVALIDATE_END);
	put_subs(m, s, 2, 0);
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "INVALIDATE_END without SEQ: -EBADMSG");

	m = msg_new(MMN_CMD_RELEASE);
	nla_put_u32(m, MMN_A_SUB_ID, 21);
	tap_is_int(parse(m, &ev, subs, 4, &need), 0, "RELEASE parses");
	tap_ok(ev.kind == SOURCE_RELEASE && ev.nsubs == 1 && subs[0].ksub_id == 21 && ev.event == MMN_EVENT_RELEASE,
	       "RELEASE carries its subscription in subs[0]");

	m = msg_new(MMN_CMD_RELEASE);
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "RELEASE without SUB_ID: -EBADMSG");

	m = msg_new(MMN_CMD_REVOKED);
	nla_put_u32(m, MMN_A_SUB_ID, 22);
	nla_put_u32(m, MMN_A_REASON, MMN_REVOKE_DESYNC);
	tap_is_int(parse(m, &ev, subs, 4, &need), 0, "REVOKED parses");
	tap_ok(ev.kind == SOURCE_REVOKED && subs[0].ksub_id == 22 &&
		       ev.reason == MMN__V1__REVOKE_REASON__REVOKE_DESYNC,
	       "kernel DESYNC becomes RevokeReason REVOKE_DESYNC");

	m = msg_new(MMN_CMD_REVOKED);
	nla_put_u32(m, MMN_A_SUB_ID, 22);
	nla_put_u32(m, MMN_A_REASON, MMN_REVOKE_TIMEOUT);
	tap_ok(parse(m, &ev, subs, 4, &need) == 0 && ev.reason == MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT,
	       "kernel TIMEOUT becomes RevokeReason REVOKE_TIMEOUT");

	m = msg_new(MMN_CMD_REVOKED);
	nla_put_u32(m, MMN_A_SUB_ID, 22);
	tap_is_int(parse(m, &ev, subs, 4, &need), -EBADMSG, "REVOKED without REASON: -EBADMSG");

	m = msg_new(MMN_CMD_RELEASE);
	nla_put_u32(m, MMN_A_SUB_ID, 21);
	tap_is_int(parse(m, &ev, subs, 0, &need), -ENOSPC, "RELEASE with no room: -ENOSPC");
}

static void emit_nothing(const struct source_event *ev, void *ud)
{
	(void)ev;
	(*(int *)ud)++;
}

static void test_constructor(void)
{
	struct source *s = NULL;
	uv_loop_t loop;
	int emitted = 0, r;

	uv_loop_init(&loop);
	r = mmn__source_kmod_new(&loop, emit_nothing, &emitted, &s);
	if (r == -ENOENT) {
		tap_ok(s == NULL, "no mmn family on this kernel: -ENOENT and no source (mmnd falls back to uffd)");
	} else if (r == 0) {
		struct kmod_stats st;

		tap_diag("the mmn family resolves here (module loaded): bound as the daemon");
		tap_is_str(s->caps.name, "kmod", "caps.name");
		tap_ok(s->caps.acks_hold_kernel && s->caps.events_before_change && !s->caps.needs_uffd &&
			       s->caps.other_processes && s->caps.event_mask == 0xff,
		       "caps of the kmod source");
		tap_is_int(mmn__source_kmod_stats(s, &st), 0, "stats readable");
		s->ops->destroy(s);
		uv_run(&loop, UV_RUN_DEFAULT);
	} else {
		tap_ok(r == -EPERM || r == -EBUSY, "module present but not bindable here: %d", r);
	}
	tap_is_int(emitted, 0, "nothing emitted");
	tap_is_int(uv_loop_close(&loop), 0, "no handle left on the loop");
}

int main(void)
{
	test_invalidate();
	test_malformed();
	test_end_release_revoked();
	test_constructor();
	return tap_done();
}
