/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source's targets: one per process with an attached uffd, found
 * by pid, freed once it is unlinked, holds no ksub and is not pinned.
 *
 * Everything here runs on mmnd's loop thread; nothing is locked.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "source/uffd-target.h"

#include "source/uffd-source.h"
#include "source/uffd-watch.h"

struct target *mmn__uffd_target_find(struct uffd_source *s, pid_t pid)
{
	struct target *t;

	for (t = s->targets; t; t = t->next)
		if (t->linked && t->pid == pid)
			return t;
	return NULL;
}

/* Free @t once nobody can reach it any more. */
void mmn__uffd_target_maybe_free(struct target *t)
{
	struct uffd_source *s = t->s;

	if (t->linked || t->nksubs || t->busy)
		return;
	mmn__uffd_uffds_close_all(t);
	free(t->uffds);
	mmn__uffd_watch_close(&t->pidfd);
	if (t->prev)
		t->prev->next = t->next;
	else
		s->targets = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
}
