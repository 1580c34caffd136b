/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The memory the library's dispatch thread touches: mapped pre-faulted,
 * locked where RLIMIT_MEMLOCK allows, and out of automatic NUMA balancing,
 * so that the thread never page-faults while the kernel holds the mmap lock
 * of its own process waiting for its ack (the self-subscription rule of
 * mmn.h).
 *
 * Why NUMA balancing: task_numa_work() periodically makes a process's
 * anonymous pages PROT_NONE to sample which node touches them, and mlock()
 * does not stop it.  The next touch is a NUMA hinting fault, which takes the
 * mmap lock (for reading, or the VMA lock, which a munmap also holds).  A
 * thread that acks an invalidation of its own process, held up by that
 * fault, misses its deadline.  task_numa_work() skips a VMA whose memory
 * policy lacks MPOL_F_MOF ("migrate on fault"), so this memory gets
 * MPOL_LOCAL: the same placement as the default policy (the node of the CPU
 * that first touches a page), without the sampling.
 */
#ifndef MMN_CLIENT_MEMORY_H
#define MMN_CLIENT_MEMORY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* Take [@p, @p + @len) out of NUMA balancing (whole pages); best effort. */
void mmn__memory_exempt(void *p, size_t len);

/*
 * Keep the calling thread from doing NUMA balancing's sampling of its
 * process.  The scheduler has a thread of the process sample (make a span
 * of its mappings inaccessible, which the kernel reports as a protection
 * change of each subscription there) on its way back to user space from a
 * timer interrupt: at any instruction.  A blocking subscription's ack is
 * then awaited on that thread, so the thread that acks would wait for
 * itself until the deadline.  The sampling skips a mapping without a
 * policy of its own when the sampling thread's policy lacks MPOL_F_MOF:
 * the thread gets MPOL_LOCAL (its placement stays the default one).  Best
 * effort.
 */
void mmn__memory_exempt_thread(void);

/*
 * @len bytes of zeroed memory, pre-faulted, exempt and locked (the lock best
 * effort, logged at debug level when refused); NULL when it cannot be mapped.
 * Freed with munmap().
 */
void *mmn__memory_map(size_t len);

/*
 * A pool of objects of one size in mmn__memory_map() chunks, for objects
 * the dispatch thread touches.  @lock guards @free, the free objects of
 * every chunk mapped so far; it is taken by any thread, never while another
 * lock is taken inside it.  The chunks are kept until the process exits: a
 * pool holds the most objects it ever gave out at once.
 */
struct mmn_memory_pool {
	pthread_mutex_t lock;
	size_t size; /* of one object */
	void *free;  /* a free object's first bytes point to the next */
	bool listed; /* memory.c's list of pools, whose locks fork() takes */
};

#define MMN_MEMORY_POOL_INIT(obj_size)                                                                       \
	{                                                                                                    \
		.lock = PTHREAD_MUTEX_INITIALIZER, .size = (obj_size), .free = NULL, .listed = false         \
	}

/* A zeroed object of @p, or NULL (-ENOMEM).  Any thread. */
void *mmn__memory_pool_alloc(struct mmn_memory_pool *p);

/* Back to @p: @obj came from mmn__memory_pool_alloc(@p); NULL is ignored. */
void mmn__memory_pool_free(struct mmn_memory_pool *p, void *obj);

#endif
