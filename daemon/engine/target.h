/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Targets: the processes whose address spaces are watched, and the changes
 * deferred while an invalidation is in flight on one.  Loop thread only.
 *
 * target  one watched process (pid + pidfd).  Refcounted by its subs,
 *         ksubs, deferred requests and in-flight events; freed at 0.
 */
#ifndef MMN_DAEMON_TARGET_H
#define MMN_DAEMON_TARGET_H

#include <sys/types.h>

#include "engine/itree.h"
#include "engine/list.h"

struct broker;
struct client;

/*
 * A deferred change to a target, applied when its last invalidation ends,
 * so the index and ksubs never change while the source waits on an ack.
 */
enum deferred_kind {
	DEF_SUBSCRIBE, /* struct pending_sub */
	DEF_REMOVE,    /* the sub embedding it */
};

struct deferred {
	struct list link; /* target->deferred, FIFO */
	enum deferred_kind kind;
};

struct target {
	struct list link; /* broker->targets */
	struct broker *b;
	pid_t pid;
	int pidfd;
	unsigned refs;
	struct itree subs;
	struct itree ksubs;
	unsigned inflight; /* events in flight on it */
	struct list deferred;
};

/* Find or create the target of @pid (0: @c itself).  Takes a reference. */
int mmn__target_get(struct broker *b, struct client *c, pid_t pid, struct target **out);
void mmn__target_put(struct target *t);

#endif
