/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Augmented AVL interval tree (see index.h).  Recursion depth is the tree
 * height, at most ~1.44 log2(n), so the stack stays small.
 */
#include "engine/itree.h"

#include <errno.h>
#include <stdbool.h>

static int height(const struct itree_node *n)
{
	return n ? n->height : 0;
}

static uint64_t subtree_max(const struct itree_node *n)
{
	return n ? n->max : 0;
}

/* Recompute height and max of @n from its children. */
static void update(struct itree_node *n)
{
	int hl = height(n->left), hr = height(n->right);
	uint64_t m = n->last;

	n->height = (hl > hr ? hl : hr) + 1;
	if (n->left && n->left->max > m)
		m = n->left->max;
	if (n->right && n->right->max > m)
		m = n->right->max;
	n->max = m;
}

/* Total order: start, then last, then address, so equal intervals coexist. */
static int cmp(const struct itree_node *a, const struct itree_node *b)
{
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	if (a->last != b->last)
		return a->last < b->last ? -1 : 1;
	if (a != b)
		return (uintptr_t)a < (uintptr_t)b ? -1 : 1;
	return 0;
}

static struct itree_node *rotate_right(struct itree_node *n)
{
	struct itree_node *l = n->left;

	n->left = l->right;
	l->right = n;
	update(n);
	update(l);
	return l;
}

static struct itree_node *rotate_left(struct itree_node *n)
{
	struct itree_node *r = n->right;

	n->right = r->left;
	r->left = n;
	update(n);
	update(r);
	return r;
}

static struct itree_node *balance(struct itree_node *n)
{
	int bf;

	update(n);
	bf = height(n->left) - height(n->right);
	if (bf > 1) {
		if (height(n->left->left) < height(n->left->right))
			n->left = rotate_left(n->left);
		return rotate_right(n);
	}
	if (bf < -1) {
		if (height(n->right->right) < height(n->right->left))
			n->right = rotate_right(n->right);
		return rotate_left(n);
	}
	return n;
}

static struct itree_node *insert(struct itree_node *root, struct itree_node *n)
{
	if (!root)
		return n;
	if (cmp(n, root) < 0)
		root->left = insert(root->left, n);
	else
		root->right = insert(root->right, n);
	return balance(root);
}

void mmn__itree_insert(struct itree *t, struct itree_node *n)
{
	n->left = n->right = NULL;
	n->height = 1;
	n->max = n->last;
	t->root = insert(t->root, n);
	t->count++;
}

/* Unlink the smallest node of @root into *@min; returns the new subtree. */
static struct itree_node *remove_min(struct itree_node *root, struct itree_node **min)
{
	if (!root->left) {
		*min = root;
		return root->right;
	}
	root->left = remove_min(root->left, min);
	return balance(root);
}

static struct itree_node *remove(struct itree_node *root, struct itree_node *n, bool *found)
{
	int c;

	if (!root)
		return NULL;
	c = cmp(n, root);
	if (c < 0) {
		root->left = remove(root->left, n, found);
	} else if (c > 0) {
		root->right = remove(root->right, n, found);
	} else {
		struct itree_node *min;

		*found = true;
		if (!root->right)
			return root->left;
		root->right = remove_min(root->right, &min);
		min->left = root->left;
		min->right = root->right;
		root = min;
	}
	return balance(root);
}

void mmn__itree_remove(struct itree *t, struct itree_node *n)
{
	bool found = false;

	t->root = remove(t->root, n, &found);
	if (found)
		t->count--;
	n->left = n->right = NULL;
}

static int query(struct itree_node *n, uint64_t start, uint64_t last, itree_visit_fn fn, void *ud)
{
	int r;

	while (n) {
		/* Nothing in this subtree ends at or after start. */
		if (n->max < start)
			return 0;
		if (n->left) {
			r = query(n->left, start, last, fn, ud);
			if (r)
				return r;
		}
		/* This node and everything right of it start after last. */
		if (n->start > last)
			return 0;
		if (n->last >= start) {
			r = fn(n, ud);
			if (r)
				return r;
		}
		n = n->right;
	}
	return 0;
}

int mmn__itree_query(const struct itree *t, uint64_t start, uint64_t last, itree_visit_fn fn, void *ud)
{
	if (start > last)
		return 0;
	return query(t->root, start, last, fn, ud);
}

int mmn__itree_height(const struct itree *t)
{
	return height(t->root);
}

static int check(const struct itree_node *n, const struct itree_node *lo, const struct itree_node *hi,
		 size_t *count)
{
	int hl, hr;
	uint64_t m;

	if (!n)
		return 0;
	if ((lo && cmp(n, lo) <= 0) || (hi && cmp(n, hi) >= 0) || n->start > n->last)
		return -EUCLEAN;
	if (check(n->left, lo, n, count) || check(n->right, n, hi, count))
		return -EUCLEAN;
	hl = height(n->left);
	hr = height(n->right);
	if (n->height != (hl > hr ? hl : hr) + 1 || hl - hr > 1 || hr - hl > 1)
		return -EUCLEAN;
	m = n->last;
	if (subtree_max(n->left) > m)
		m = subtree_max(n->left);
	if (subtree_max(n->right) > m)
		m = subtree_max(n->right);
	if (n->max != m)
		return -EUCLEAN;
	(*count)++;
	return 0;
}

int mmn__itree_check(const struct itree *t)
{
	size_t count = 0;

	if (check(t->root, NULL, NULL, &count))
		return -EUCLEAN;
	return count == t->count ? 0 : -EUCLEAN;
}
