/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source's ksubs: kept in their target's interval tree (by range)
 * and in the source's array sorted by id; the source_ops that add, delete
 * and look them up.
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

#include "source/uffd-ksub.h"

#include "engine/itree.h"
#include "source/uffd-source.h"
#include "source/uffd-target.h"

/* Index in s->byid of the first ksub whose id is >= @id. */
static size_t byid_lower(const struct uffd_source *s, uint32_t id)
{
	size_t lo = 0, hi = s->nbyid;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->byid[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct ksub *mmn__uffd_ksub_find(struct uffd_source *s, uint32_t id)
{
	size_t i = byid_lower(s, id);

	return i < s->nbyid && s->byid[i]->id == id ? s->byid[i] : NULL;
}

/* A fresh non-zero id not in use (ids wrap after 2^32 allocations). */
static uint32_t ksub_new_id(struct uffd_source *s)
{
	for (;;) {
		uint32_t id = s->next_id++;

		if (id && !mmn__uffd_ksub_find(s, id))
			return id;
	}
}

int mmn__uffd_ksub_add(struct source *src, const struct source_target *st, uint64_t start, uint64_t length,
			 bool blocking, uint32_t timeout_ms, uint32_t *ksub_id)
{
	struct uffd_source *s = to_uffd(src);
	struct target *t;
	struct ksub *k;
	size_t i;

	if (!st || !ksub_id)
		return -EINVAL;
	if (length == 0 || start > USER_ADDR_LIMIT || length > USER_ADDR_LIMIT - start)
		return -EINVAL;
	t = mmn__uffd_target_find(s, st->pid);
	if (!t)
		return -EOPNOTSUPP; /* only processes that attached their uffd can be watched */
	if (t->dead)
		return -ESRCH; /* attached, but exited or its uffds failed */
	if (t->nksubs >= MAX_KSUBS_PER_TARGET)
		return -ENOSPC;
	if (s->nbyid == s->capbyid) {
		size_t cap = s->capbyid ? s->capbyid * 2 : 64;
		struct ksub **p = realloc(s->byid, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->byid = p;
		s->capbyid = cap;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->id = ksub_new_id(s);
	k->start = start;
	k->end = start + length;
	k->t = t;
	k->blocking = blocking;
	k->node.start = start;
	k->node.last = k->end - 1;
	mmn__itree_insert(&t->index, &k->node);
	t->nksubs++;
	i = byid_lower(s, k->id);
	memmove(&s->byid[i + 1], &s->byid[i], (s->nbyid - i) * sizeof(s->byid[0]));
	s->byid[i] = k;
	s->nbyid++;
	*ksub_id = k->id;
	return 0;
}

int mmn__uffd_ksub_del(struct source *src, uint32_t id)
{
	struct uffd_source *s = to_uffd(src);
	size_t i = byid_lower(s, id);
	struct ksub *k;
	struct target *t;

	if (i >= s->nbyid || s->byid[i]->id != id)
		return -ENOENT;
	k = s->byid[i];
	t = k->t;
	memmove(&s->byid[i], &s->byid[i + 1], (s->nbyid - i - 1) * sizeof(s->byid[0]));
	s->nbyid--;
	mmn__itree_remove(&t->index, &k->node);
	t->nksubs--;
	free(k);
	mmn__uffd_target_maybe_free(t);
	return 0;
}

int mmn__uffd_ksub_set_blocking(struct source *src, uint32_t id, bool blocking)
{
	struct ksub *k = mmn__uffd_ksub_find(to_uffd(src), id);

	if (!k)
		return -ENOENT;
	k->blocking = blocking;
	return 0;
}

int mmn__uffd_ksub_resynced(struct source *src, uint32_t id)
{
	/* Events are never lost silently here: a failed uffd revokes instead. */
	return mmn__uffd_ksub_find(to_uffd(src), id) ? 0 : -ENOENT;
}
