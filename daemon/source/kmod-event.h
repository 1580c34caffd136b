/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kmod source's messages turned into source events (kmod-event.c). */
#ifndef MMN_DAEMON_SOURCE_KMOD_EVENT_H
#define MMN_DAEMON_SOURCE_KMOD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/netlink.h>

#include <uv.h>

struct kmod_source;

/* The module is gone or the socket failed: SOURCE_LOST, once. */
void mmn__kmod_lost(struct kmod_source *ks, int err);
/* Forget event @id the kernel waits on; false when it was not awaited. */
bool mmn__kmod_awaiting_take(struct kmod_source *ks, uint64_t id);
/* Every ksub is revoked: events were lost and nobody knows which. */
void mmn__kmod_overrun(struct kmod_source *ks);
/* An nlctrl notice: the family's removal is SOURCE_LOST. */
void mmn__kmod_ctrl_message(struct kmod_source *ks, struct nlmsghdr *nlh);
/* One message of the family read as @rx, passed on as a source event. */
void mmn__kmod_event_message(struct kmod_source *ks, struct nlmsghdr *nlh, uint64_t rx);

#endif
