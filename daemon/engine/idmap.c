/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "engine/idmap.h"

#include <errno.h>
#include <stdlib.h>

/* Fibonacci hashing: ids are sequential, the high bits of the product spread them. */
static size_t bucket_of(uint64_t id, size_t mask)
{
	return (size_t)((id * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & mask;
}

static struct idmap_node **head(struct idmap *m, uint64_t id)
{
	return m->buckets ? &m->buckets[bucket_of(id, m->mask)] : &m->one;
}

static void move_chain(struct idmap_node *n, struct idmap_node **v, size_t mask)
{
	while (n) {
		struct idmap_node *next = n->next;
		size_t h = bucket_of(n->id, mask);

		n->next = v[h];
		v[h] = n;
		n = next;
	}
}

int mmn__idmap_reserve(struct idmap *m, size_t n)
{
	size_t nb = m->buckets ? m->mask + 1 : 1, want = 16;
	struct idmap_node **v;

	while (want < n && want <= SIZE_MAX / 2 / sizeof(*v))
		want *= 2;
	if (want <= nb)
		return 0;
	v = calloc(want, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (m->buckets) {
		for (size_t i = 0; i <= m->mask; i++)
			move_chain(m->buckets[i], v, want - 1);
	} else {
		move_chain(m->one, v, want - 1);
		m->one = NULL;
	}
	free(m->buckets);
	m->buckets = v;
	m->mask = want - 1;
	return 0;
}

void mmn__idmap_add(struct idmap *m, struct idmap_node *n)
{
	struct idmap_node **h;

	/* Load factor at most 1; a failed growth only lengthens the chains. */
	if (m->count >= (m->buckets ? m->mask + 1 : 1))
		(void)mmn__idmap_reserve(m, (m->count + 1) * 2);
	h = head(m, n->id);
	n->next = *h;
	*h = n;
	m->count++;
}

void mmn__idmap_del(struct idmap *m, struct idmap_node *n)
{
	for (struct idmap_node **p = head(m, n->id); *p; p = &(*p)->next) {
		if (*p == n) {
			*p = n->next;
			n->next = NULL;
			m->count--;
			return;
		}
	}
}

struct idmap_node *mmn__idmap_find(const struct idmap *m, uint64_t id)
{
	struct idmap_node *n = m->buckets ? m->buckets[bucket_of(id, m->mask)] : m->one;

	for (; n; n = n->next)
		if (n->id == id)
			return n;
	return NULL;
}

void mmn__idmap_free(struct idmap *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->one = NULL;
	m->mask = m->count = 0;
}
