/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kmod source's translation of the module's messages into source
 * events: INVALIDATE, INVALIDATE_END, RELEASE and REVOKED filtered by the
 * ksubs the broker holds, the acks the kernel waits on, an overrun (every
 * ksub revoked) and the loss of the module (SOURCE_LOST).
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

#include "source/kmod-event.h"

#include "log.h"
#include "mmn.pb-c.h"
#include "source/kmod-channel.h"
#include "source/kmod-ksub.h"
#include "source/kmod-source.h"

/* ---- events -------------------------------------------------------------- */

void mmn__kmod_lost(struct kmod_source *ks, int err)
{
	struct source_event ev = { .kind = SOURCE_LOST, .reason = (uint32_t)err };

	if (ks->lost)
		return;
	ks->lost = true;
	uv_poll_stop(&ks->poll);
	uv_idle_stop(&ks->idle);
	mmn__log(LOG_ERR, MMN_MSGID_SOURCE_LOST, "kmod source lost: %s", strerror(-err));
	ks->base.emit(&ev, ks->base.userdata);
}

bool mmn__kmod_awaiting_take(struct kmod_source *ks, uint64_t id)
{
	for (size_t i = 0; i < ks->nawaiting; i++) {
		if (ks->awaiting[i] == id) {
			ks->awaiting[i] = ks->awaiting[--ks->nawaiting];
			return true;
		}
	}
	return ks->awaiting_overflow; /* we may have forgotten it */
}

/* Every ksub is revoked: events were lost and nobody knows which. */
void mmn__kmod_overrun(struct kmod_source *ks)
{
	struct source_event_sub sub = { 0 };
	struct source_event ev = { .kind = SOURCE_REVOKED, .reason = MMN__V1__REVOKE_REASON__REVOKE_DESYNC,
				   .range_end = UINT64_MAX, .nsubs = 1, .subs = &sub };
	uint32_t *ids;
	size_t n = 0;

	ks->stats.overruns++;
	if (mmn__kmod_family_gone(ks)) {
		mmn__kmod_lost(ks, -ENODEV);
		return;
	}
	if (mmn__ratelimit_ok(&ks->rl, mmn__kmod_now_ms()))
		mmn__log(LOG_WARNING, MMN_MSGID_SOURCE_RESYNC,
			 "kmod: netlink receive queue overran, resynchronising %zu subscriptions",
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
		if (!mmn__kmod_ksub_find(ks, ids[i]))
			continue;
		sub.ksub_id = ids[i];
		ks->stats.desync_revokes++;
		ks->base.emit(&ev, ks->base.userdata);
	}
	free(ids);
}

void mmn__kmod_ctrl_message(struct kmod_source *ks, struct nlmsghdr *nlh)
{
	struct nlattr *tb[CTRL_ATTR_MAX + 1];

	if (!genlmsg_valid_hdr(nlh, 0) || genlmsg_hdr(nlh)->cmd != CTRL_CMD_DELFAMILY)
		return;
	if (genlmsg_parse(nlh, 0, tb, CTRL_ATTR_MAX, NULL) < 0 || !tb[CTRL_ATTR_FAMILY_ID])
		return;
	if (nla_get_u16(tb[CTRL_ATTR_FAMILY_ID]) == ks->family)
		mmn__kmod_lost(ks, -ENODEV);
}

/* Keep only the ksubs the broker still holds and that are not dead. */
static size_t filter_live(struct kmod_source *ks, struct source_event_sub *subs, size_t n, uint64_t rx)
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		struct ksub_slot *k = mmn__kmod_ksub_for(ks, subs[i].ksub_id, rx);

		if (k && !k->dead)
			subs[j++] = subs[i];
	}
	return j;
}

void mmn__kmod_event_message(struct kmod_source *ks, struct nlmsghdr *nlh, uint64_t rx)
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
		mmn__kmod_overrun(ks);
		return;
	}

	switch (ev.kind) {
	case SOURCE_INVALIDATE:
		ks->stats.events++;
		ev.nsubs = filter_live(ks, ks->subs, ev.nsubs, rx);
		if (ev.nsubs == 0) { /* only ksubs being removed: nobody to ask */
			if (ev.needs_ack) {
				ks->stats.self_acks++;
				mmn__kmod_send_ack(ks, ev.event_id);
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
		k = mmn__kmod_ksub_for(ks, ev.subs[0].ksub_id, rx);
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
