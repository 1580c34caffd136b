/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uffd source's polled fds and a target's array of uffd watches (uffd-watch.c). */
#ifndef MMN_DAEMON_SOURCE_UFFD_WATCH_H
#define MMN_DAEMON_SOURCE_UFFD_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

struct source;
struct source_target;
struct target;
struct uffd_source;
struct watch;

/* Poll @fd readable with @cb on behalf of @t; *@out is freed by its close callback. */
int mmn__uffd_watch_open(struct uffd_source *s, struct target *t, int fd, uv_poll_cb cb, struct watch **out);
/* Stop *@wp, close its fd now, free it from the close callback; *@wp = NULL. */
void mmn__uffd_watch_close(struct watch **wp);

/* Append @w to @t's uffds: 0 or -ENOMEM. */
int mmn__uffd_uffds_add(struct target *t, struct watch *w);
/* Close t->uffds[i]; the last one takes its place. */
void mmn__uffd_uffds_close(struct target *t, size_t i);
/* Close every uffd of @t. */
void mmn__uffd_uffds_close_all(struct target *t);
/* Close @w if it is one of @t's uffds. */
void mmn__uffd_uffds_close_watch(struct target *t, struct watch *w);

#endif
