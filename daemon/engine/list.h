/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An intrusive circular doubly-linked list: the links live in the objects,
 * so linking never allocates.  Not thread-safe: mmnd has one loop thread.
 */
#ifndef MMN_DAEMON_LIST_H
#define MMN_DAEMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* Intrusive circular doubly-linked list. */
struct list {
	struct list *next, *prev;
};

static inline void list_init(struct list *l)
{
	l->next = l->prev = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

static inline bool list_linked(const struct list *l)
{
	return l->next && l->next != l;
}

static inline void list_add_tail(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define container_of(p, T, m)	 ((T *)(void *)((char *)(p)-offsetof(T, m)))
#define list_entry(p, T, m)	 container_of(p, T, m)
#define list_for_each(pos, head) for (struct list *pos = (head)->next; pos != (head); pos = pos->next)
#define list_for_each_safe(pos, head)                                                                        \
	for (struct list *pos = (head)->next, *pos##_n = pos->next; pos != (head);                           \
	     pos = pos##_n, pos##_n = pos->next)

#endif
