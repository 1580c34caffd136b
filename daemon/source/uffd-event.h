/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uffd source's events: reading the uffds and pidfds (uffd-event.c). */
#ifndef MMN_DAEMON_SOURCE_UFFD_EVENT_H
#define MMN_DAEMON_SOURCE_UFFD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "source/uffd-source.h"

struct source;
struct source_target;
struct target;
struct uffd_source;
struct watch;

/* Close @t's open ksubs with @why from the source's idle callback (RELEASE wins). */
void mmn__uffd_defer_close(struct target *t, enum close_reason why);
/* The poll callback of a uffd watch: read and translate its messages. */
void mmn__uffd_uffd_cb(uv_poll_t *h, int status, int events);
/* The poll callback of a pidfd watch: the process exited. */
void mmn__uffd_pidfd_cb(uv_poll_t *h, int status, int events);

#endif
