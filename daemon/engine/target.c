/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Targets: the processes whose address spaces are watched, identified by a
 * pidfd so that a recycled pid never aliases a live target.  A target found
 * by pid is reused only while its pidfd still names a living process.
 */

#include "engine/target.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "engine/list.h"
#include "engine/pidfd.h"

static struct target *target_find(struct broker *b, pid_t pid)
{
	list_for_each(pos, &b->targets)
	{
		struct target *t = list_entry(pos, struct target, link);

		if (t->pid == pid && mmn__pidfd_alive(t->pidfd, t->pid))
			return t;
	}
	return NULL;
}

int mmn__target_get(struct broker *b, struct client *c, pid_t pid, struct target **out)
{
	struct target *t;
	int pidfd;

	if (pid == 0 || pid == c->pid)
		pid = c->pid;
	t = target_find(b, pid);
	if (t) {
		t->refs++;
		*out = t;
		return 0;
	}
	if (b->ntargets >= b->opt.max_targets)
		return -EUSERS;
	if (pid == c->pid && c->pidfd >= 0) {
		pidfd = fcntl(c->pidfd, F_DUPFD_CLOEXEC, 3);
		if (pidfd < 0)
			return -errno;
	} else {
		pidfd = mmn__pidfd_open(pid);
		if (pidfd < 0)
			return pidfd;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(pidfd);
		return -ENOMEM;
	}
	t->b = b;
	t->pid = pid;
	t->pidfd = pidfd;
	t->refs = 1;
	list_init(&t->deferred);
	list_add_tail(&b->targets, &t->link);
	b->ntargets++;
	*out = t;
	return 0;
}

void mmn__target_put(struct target *t)
{
	if (--t->refs)
		return;
	list_del(&t->link);
	t->b->ntargets--;
	close(t->pidfd);
	free(t);
}

