/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source's watches: a uv_poll_t on one uffd or pidfd of a target,
 * allocated on its own and freed by its close callback, and the array of a
 * target's uffd watches (one per connection of the process).
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

#include "source/uffd-watch.h"

#include "source/uffd-source.h"

static void watch_free_cb(uv_handle_t *h)
{
	struct watch *w = h->data;

	free(w);
}

int mmn__uffd_watch_open(struct uffd_source *s, struct target *t, int fd, uv_poll_cb cb, struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	r = uv_poll_init(s->src.loop, &w->poll, fd);
	if (r < 0) {
		free(w);
		return r;
	}
	w->poll.data = w;
	w->fd = fd;
	w->t = t;
	r = uv_poll_start(&w->poll, UV_READABLE, cb);
	if (r < 0) {
		uv_close((uv_handle_t *)&w->poll, watch_free_cb);
		return r;
	}
	*out = w;
	return 0;
}

/*
 * uv_close() stops the poll (epoll_ctl DEL) at once, so the fd can be closed
 * right away; the watch memory goes in the close callback.  Closing a uffd
 * makes the kernel unregister the client's ranges and wake every thread still
 * waiting for one of its events to be read.
 */
void mmn__uffd_watch_close(struct watch **wp)
{
	struct watch *w = *wp;

	if (!w)
		return;
	*wp = NULL;
	w->t = NULL;
	uv_close((uv_handle_t *)&w->poll, watch_free_cb);
	close(w->fd);
}

int mmn__uffd_uffds_add(struct target *t, struct watch *w)
{
	if (t->nuffds == t->capuffds) {
		size_t cap = t->capuffds ? t->capuffds * 2 : 2;
		struct watch **p = realloc(t->uffds, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->uffds = p;
		t->capuffds = cap;
	}
	t->uffds[t->nuffds++] = w;
	return 0;
}

/* Close t->uffds[i]; the last one takes its place. */
void mmn__uffd_uffds_close(struct target *t, size_t i)
{
	mmn__uffd_watch_close(&t->uffds[i]);
	t->uffds[i] = t->uffds[--t->nuffds];
}

void mmn__uffd_uffds_close_all(struct target *t)
{
	while (t->nuffds)
		mmn__uffd_uffds_close(t, t->nuffds - 1);
}

void mmn__uffd_uffds_close_watch(struct target *t, struct watch *w)
{
	for (size_t i = 0; i < t->nuffds; i++) {
		if (t->uffds[i] == w) {
			mmn__uffd_uffds_close(t, i);
			return;
		}
	}
}
