/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The module's event messages (genetlink, linux/mmn.h) parsed into source
 * events: every attribute is checked against a policy, ranges and counts
 * are bounded by the caller's array, and a malformed message is an error,
 * never a crash.  No state; used by kmod-event.c, kmod-receive.c,
 * kmod-channel.c and the fuzz and host tests.
 */
#include "source/kmod-genl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <linux/genetlink.h>
#include <linux/mmn.h>
#include <linux/netlink.h>

#include <netlink/attr.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include "mmn.pb-c.h"

/* ---- parsing ------------------------------------------------------------ */

const struct nla_policy mmn__kmod_ev_policy[MMN_A_MAX + 1] = {
	[MMN_A_PID] = { .type = NLA_U32, .maxlen = 4 },
	[MMN_A_START] = { .type = NLA_U64, .maxlen = 8 },
	[MMN_A_END] = { .type = NLA_U64, .maxlen = 8 },
	[MMN_A_SUB_ID] = { .type = NLA_U32, .maxlen = 4 },
	[MMN_A_SEQ] = { .type = NLA_U64, .maxlen = 8 },
	[MMN_A_EVENT] = { .type = NLA_U32, .maxlen = 4 },
	[MMN_A_EVENT_FLAGS] = { .type = NLA_U32, .maxlen = 4 },
	[MMN_A_RANGE_START] = { .type = NLA_U64, .maxlen = 8 },
	[MMN_A_RANGE_END] = { .type = NLA_U64, .maxlen = 8 },
	[MMN_A_SUBS] = { .type = NLA_NESTED },
	[MMN_A_REASON] = { .type = NLA_U32, .maxlen = 4 },
};

static uint32_t map_reason(uint32_t r)
{
	switch (r) {
	case MMN_REVOKE_TIMEOUT:
		return MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT;
	case MMN_REVOKE_DESYNC:
	default: /* whatever it is, the ksub is out of sync */
		return MMN__V1__REVOKE_REASON__REVOKE_DESYNC;
	}
}

/* Walk MMN_A_SUBS; with @subs non-NULL fill it (the caller checked the count). */
static int parse_subs(struct nlattr *nest, bool ranges, struct source_event_sub *subs, size_t *n)
{
	struct nlattr *a, *tb[MMN_A_MAX + 1];
	size_t i = 0;
	int rem, r;

	nla_for_each_nested(a, nest, rem) {
		if (nla_type(a) == MMN_A_PAD) /* alignment padding (nla_put_u64_64bit) */
			continue;
		if (nla_type(a) != MMN_A_SUB)
			return -EBADMSG;
		r = nla_parse_nested(tb, MMN_A_MAX, a, mmn__kmod_ev_policy);
		if (r < 0 || !tb[MMN_A_SUB_ID])
			return -EBADMSG;
		if (ranges && (!tb[MMN_A_START] || !tb[MMN_A_END]))
			return -EBADMSG;
		if (subs) {
			subs[i].ksub_id = nla_get_u32(tb[MMN_A_SUB_ID]);
			subs[i].start = tb[MMN_A_START] ? nla_get_u64(tb[MMN_A_START]) : 0;
			subs[i].end = tb[MMN_A_END] ? nla_get_u64(tb[MMN_A_END]) : 0;
			if (ranges && subs[i].end <= subs[i].start)
				return -EBADMSG;
		}
		i++;
	}
	if (rem != 0)
		return -EBADMSG;
	*n = i;
	return 0;
}

/* The event kind of genetlink command @cmd, or -EOPNOTSUPP. */
static int parse_kind(uint8_t cmd, struct source_event *ev)
{
	switch (cmd) {
	case MMN_CMD_INVALIDATE:
		ev->kind = SOURCE_INVALIDATE;
		break;
	case MMN_CMD_INVALIDATE_END:
		ev->kind = SOURCE_INVALIDATE_END;
		break;
	case MMN_CMD_RELEASE:
		ev->kind = SOURCE_RELEASE;
		break;
	case MMN_CMD_REVOKED:
		ev->kind = SOURCE_REVOKED;
		break;
	default:
		return -EOPNOTSUPP;
	}
	return 0;
}

/* RELEASE and REVOKED name one ksub and no range. */
static int parse_release(struct nlattr **tb, struct source_event *ev, struct source_event_sub *subs, size_t cap,
			 size_t *needed)
{
	if (!tb[MMN_A_SUB_ID] || (ev->kind == SOURCE_REVOKED && !tb[MMN_A_REASON]))
		return -EBADMSG;
	if (cap < 1) {
		*needed = 1;
		return -ENOSPC;
	}
	subs[0] = (struct source_event_sub){ .ksub_id = nla_get_u32(tb[MMN_A_SUB_ID]) };
	if (ev->kind == SOURCE_REVOKED)
		ev->reason = map_reason(nla_get_u32(tb[MMN_A_REASON]));
	else
		ev->event = MMN_EVENT_RELEASE;
	ev->range_end = UINT64_MAX;
	ev->nsubs = 1;
	ev->subs = subs;
	return 0;
}

int mmn__kmod_parse_event(const struct nlmsghdr *nlh, struct source_event *ev, struct source_event_sub *subs,
			  size_t cap, size_t *needed)
{
	struct nlmsghdr *h = (struct nlmsghdr *)nlh; /* libnl's parsers take non-const */
	struct nlattr *tb[MMN_A_MAX + 1];
	const struct genlmsghdr *g;
	bool ranges;
	size_t n = 0;
	uint32_t fl;
	int r;

	*needed = 0;
	if (!genlmsg_valid_hdr(h, 0))
		return -EBADMSG;
	g = genlmsg_hdr(h);
	memset(ev, 0, sizeof(*ev));
	r = parse_kind(g->cmd, ev);
	if (r < 0)
		return r;
	r = genlmsg_parse(h, 0, tb, MMN_A_MAX, mmn__kmod_ev_policy);
	if (r < 0)
		return -EBADMSG;
	if (tb[MMN_A_PID])
		ev->pid = (pid_t)nla_get_u32(tb[MMN_A_PID]);

	if (ev->kind == SOURCE_RELEASE || ev->kind == SOURCE_REVOKED)
		return parse_release(tb, ev, subs, cap, needed);

	if (!tb[MMN_A_SEQ] || !tb[MMN_A_SUBS])
		return -EBADMSG;
	ev->event_id = nla_get_u64(tb[MMN_A_SEQ]);
	ranges = ev->kind == SOURCE_INVALIDATE;
	if (ranges) {
		if (!tb[MMN_A_EVENT] || !tb[MMN_A_EVENT_FLAGS])
			return -EBADMSG;
		ev->event = nla_get_u32(tb[MMN_A_EVENT]);
		if (ev->event > MMN_EVENT_EXCLUSIVE) /* a newer kernel's event: still a clear */
			ev->event = MMN_EVENT_CLEAR;
		fl = nla_get_u32(tb[MMN_A_EVENT_FLAGS]);
		ev->blockable = fl & MMN_EV_F_BLOCKABLE;
		ev->needs_ack = fl & MMN_EV_F_NEEDS_ACK;
		ev->refused = fl & MMN_EV_F_REFUSED;
		if (tb[MMN_A_RANGE_START] && tb[MMN_A_RANGE_END]) {
			ev->range_start = nla_get_u64(tb[MMN_A_RANGE_START]);
			ev->range_end = nla_get_u64(tb[MMN_A_RANGE_END]);
		}
	}
	r = parse_subs(tb[MMN_A_SUBS], ranges, NULL, &n);
	if (r < 0)
		return r;
	if (n > cap) {
		*needed = n;
		return -ENOSPC;
	}
	r = parse_subs(tb[MMN_A_SUBS], ranges, subs, &n);
	if (r < 0)
		return r;
	if (ranges && !tb[MMN_A_RANGE_START] && n) { /* the module always sends it; be lenient */
		ev->range_start = subs[0].start;
		ev->range_end = subs[n - 1].end;
	}
	ev->nsubs = n;
	ev->subs = subs;
	return 0;
}
