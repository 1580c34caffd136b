/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: the bounded wait of a blockable invalidation for the daemon's ACK.
 */
#ifndef MMN_WAIT_H
#define MMN_WAIT_H

#include <linux/list.h>
#include <linux/types.h>

struct mmn_batch;
struct mmn_group;

enum mmn_wait_result {
	MMN_WAIT_PENDING,
	MMN_WAIT_ACKED,
	MMN_WAIT_GONE,		/* daemon gone, or no listed blocking subscription left */
};

/*
 * A thread sleeping in a blockable invalidation, on its own stack.  Linked in
 * the list of waiters under mmn_wait_lock (wait.c); whoever sets done unlinks
 * it in the same critical section, so nobody touches it after its owner
 * relocked and saw it unlinked.
 */
struct mmn_waiter {
	struct list_head node;
	u64 seq;
	struct mmn_group *group;
	struct mmn_batch *batch;
	int done;			/* enum mmn_wait_result, READ_ONCE */
};

bool mmn_wait_add(struct mmn_waiter *wt, struct mmn_group *g,
		  struct mmn_batch *b);
void mmn_wait_cancel(struct mmn_waiter *wt);
int mmn_wait_for(struct mmn_waiter *wt, unsigned int timeout_ms);
int mmn_wait_ack(u64 seq);
void mmn_wait_recheck(struct mmn_group *g);
void mmn_wait_release_all(void);

#endif /* MMN_WAIT_H */
