/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: the daemon's requests on subscriptions: SUBSCRIBE, UNSUBSCRIBE,
 * SET_FLAGS, GET_SUBS, and the removal of them all when the daemon goes.
 */
#ifndef MMN_SUBSCRIBE_H
#define MMN_SUBSCRIBE_H

#include <linux/types.h>

struct netlink_callback;
struct netlink_ext_ack;
struct sk_buff;

int mmn_sub_create(u32 pid, unsigned long start, unsigned long len, u32 flags,
		   u32 timeout_ms, struct netlink_ext_ack *extack, u32 *id);
int mmn_sub_unsubscribe(u32 id);
int mmn_sub_set_flags(u32 id, u32 flags, struct netlink_ext_ack *extack);
void mmn_sub_teardown_all(void);
int mmn_sub_dump(struct sk_buff *skb, struct netlink_callback *cb);

#endif /* MMN_SUBSCRIBE_H */
