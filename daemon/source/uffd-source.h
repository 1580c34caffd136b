/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source's state, shared by its files: uffd.c (the source_ops
 * that attach and detach uffds, the source's life), uffd-event.c (reading
 * the uffds, events), uffd-register.c (registrations), uffd-ksub.c (ksubs),
 * uffd-target.c (targets) and uffd-watch.c (polled fds).
 *
 * Lifetimes: see the top of uffd.c and each struct below.  Nothing is
 * locked: all of it runs on mmnd's loop thread.
 */
#ifndef MMN_DAEMON_SOURCE_UFFD_SOURCE_H
#define MMN_DAEMON_SOURCE_UFFD_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "engine/itree.h"
#include "log.h"
#include "mmn.pb-c.h"
#include "source/source.h"

/* mmn.v1.EventType (= enum mmn_event) values this source emits. */
#define EV_UNMAP	   MMN__V1__EVENT_TYPE__EVENT_UNMAP
#define EV_PROTECTION_PAGE MMN__V1__EVENT_TYPE__EVENT_PROTECTION_PAGE
#define EV_REMOVE	   MMN__V1__EVENT_TYPE__EVENT_REMOVE
#define EV_REMAP	   MMN__V1__EVENT_TYPE__EVENT_REMAP
#define REVOKE_SOURCE_GONE MMN__V1__REVOKE_REASON__REVOKE_SOURCE_GONE

#define UFFD_MASK_REQUIRED (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP)

/* Messages read per read(2); a callback reads at most MAX_BATCHES of them. */
#define UFFD_BATCH  32
#define MAX_BATCHES 8

/* Highest user address any supported architecture has (x86-64 LA57: 2^56). */
#define USER_ADDR_LIMIT	     (1ULL << 57)
#define MAX_KSUBS_PER_TARGET 65536

struct uffd_source;
struct target;

/*
 * One polled fd: a uffd or a pidfd.  Freed by its close callback; @t is
 * cleared when detached.
 */
struct watch {
	uv_poll_t poll;
	int fd;
	struct target *t;
	uint64_t conn; /* a uffd: the client connection that attached it */
};

struct ksub {
	struct itree_node node; /* [start, end - 1] in target->index */
	uint32_t id;
	uint64_t start, end; /* end exclusive */
	struct target *t;
	bool blocking; /* recorded only: acks never hold the kernel here */
	bool closed;   /* RELEASE or REVOKED reported: no further events */
};

enum close_reason {
	CLOSE_NONE,
	CLOSE_REVOKED, /* uffd detached while the process lives: nobody reports for it any more */
	CLOSE_RELEASE, /* the process exited */
};

struct target {
	struct uffd_source *s;
	struct target *prev, *next; /* s->targets */
	pid_t pid;
	bool linked;	      /* attached: found by pid; false once detached */
	bool dead;	      /* exited, or every uffd failed: nothing more will be reported */
	bool fork_events;     /* some client enabled UFFD_FEATURE_EVENT_FORK */
	unsigned attached;    /* attach_uffd calls not yet matched by a detach_uffd */
	struct watch **uffds; /* every uffd of this process mmnd holds and reads */
	size_t nuffds, capuffds;
	struct watch *pidfd; /* NULL when unknown or closed */
	struct itree index;  /* ksubs by range */
	size_t nksubs;
	enum close_reason pending; /* close every open ksub from the deferred callback */
	unsigned busy;		   /* pinned while its events are emitted */
};

struct uffd_source {
	struct source src; /* first: the broker sees a struct source */
	struct target *targets;
	/* Every live ksub, sorted by id, for ksub_del and friends. */
	struct ksub **byid;
	size_t nbyid, capbyid;
	uint32_t next_id;
	uint64_t next_event;
	/* Scratch for one event's clipped ksubs; valid only while emitting. */
	struct source_event_sub *scratch;
	size_t nscratch, capscratch;
	/* Closing ksubs (RELEASE/REVOKED) is deferred to here, out of the broker's calls. */
	uv_idle_t defer;
	/* An fd kept open to survive EMFILE: a FORK message needs a free fd to be read. */
	int reserve_fd;
	uint64_t faults;	 /* page faults seen (misuse by the client) */
	struct ratelimit log_rl; /* everything logged here a client can trigger */
};

static inline struct uffd_source *to_uffd(struct source *s)
{
	return (struct uffd_source *)s;
}

#endif
