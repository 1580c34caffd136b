/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The dispatch thread's memory (memory.h says why it is exempt from NUMA
 * balancing) and its pools of objects.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "error.h"
#include "memory.h"

/*
 * Under AddressSanitizer a free object is poisoned but for its link, so a
 * handle used after it went back to the pool is still reported.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

/* <numaif.h> belongs to libnuma; the kernel's value of the mode. */
#ifndef MPOL_LOCAL
#define MPOL_LOCAL 4
#endif

void mmn__memory_exempt(void *p, size_t len)
{
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)p & ~(ps - 1), b = ((uintptr_t)p + len + ps - 1) & ~(ps - 1);

	/* ENOSYS: a kernel without NUMA, where nothing is sampled either. */
	if (len && syscall(SYS_mbind, a, b - a, MPOL_LOCAL, NULL, 0UL, 0U) < 0 && errno != ENOSYS)
		mmn__log(LOG_DEBUG, "mmn: cannot exempt memory from NUMA balancing: %m");
}

void mmn__memory_exempt_thread(void)
{
	if (syscall(SYS_set_mempolicy, MPOL_LOCAL, NULL, 0UL) < 0 && errno != ENOSYS)
		mmn__log(LOG_DEBUG, "mmn: cannot exempt the dispatch thread from NUMA balancing: %m");
}

void *mmn__memory_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	mmn__memory_exempt(p, len);
	if (mlock(p, len) < 0)
		mmn__log(LOG_DEBUG, "mmn: cannot lock %zu bytes (RLIMIT_MEMLOCK?): %m", len);
	return p;
}

/* Objects per chunk; an object's room is its size rounded up to a cache line. */
#define POOL_CHUNK_OBJECTS 64

/*
 * fork(): a child may free objects (mmn_disconnect() there frees the
 * handles), so no pool lock may be held by another thread of the parent
 * when it forks.  Every pool used so far is listed here, under
 * pools_lock, and its lock is taken around fork() (a pool lock is a leaf:
 * taking them in the prepare handler cannot wait on anything that waits
 * for the forking thread).
 */
#define MAX_POOLS 4
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mmn_memory_pool *pools[MAX_POOLS];
static size_t npools;
static pthread_once_t pools_once = PTHREAD_ONCE_INIT;

static void pools_prepare(void)
{
	pthread_mutex_lock(&pools_lock);
	for (size_t i = 0; i < npools; i++)
		pthread_mutex_lock(&pools[i]->lock);
}

static void pools_release(void)
{
	for (size_t i = npools; i-- > 0;)
		pthread_mutex_unlock(&pools[i]->lock);
	pthread_mutex_unlock(&pools_lock);
}

static void pools_atfork(void)
{
	pthread_atfork(pools_prepare, pools_release, pools_release);
}

/* List @p for fork() at its first use; false when the list is full (a bug). */
static bool pool_listed(struct mmn_memory_pool *p)
{
	bool ok = true;

	pthread_once(&pools_once, pools_atfork);
	pthread_mutex_lock(&pools_lock);
	if (!p->listed) {
		ok = npools < MAX_POOLS;
		if (ok)
			pools[npools++] = p;
		__atomic_store_n(&p->listed, ok, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&pools_lock);
	return ok;
}

static size_t room(const struct mmn_memory_pool *p)
{
	return (p->size + 63) & ~(size_t)63;
}

/*
 * A new chunk's objects onto p->free; 0 or -ENOMEM.  The chunk is mapped
 * before p->lock is taken: mmap() waits for the mmap lock, which a munmap
 * of this process may hold while it waits for the dispatch thread's ack,
 * and the dispatch thread takes p->lock when it frees a handle.
 */
static int pool_grow(struct mmn_memory_pool *p)
{
	char *chunk = mmn__memory_map(room(p) * POOL_CHUNK_OBJECTS);

	if (!chunk)
		return -ENOMEM;
	pthread_mutex_lock(&p->lock);
	for (size_t i = POOL_CHUNK_OBJECTS; i-- > 0;) {
		void **obj = (void **)(void *)(chunk + i * room(p));

		*obj = p->free;
		p->free = obj;
		ASAN_POISON_MEMORY_REGION(obj + 1, room(p) - sizeof(*obj));
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* The first free object of @p, or NULL when there is none. */
static void **pool_pop(struct mmn_memory_pool *p)
{
	void **obj;

	pthread_mutex_lock(&p->lock);
	obj = p->free;
	if (obj)
		p->free = *obj;
	pthread_mutex_unlock(&p->lock);
	return obj;
}

void *mmn__memory_pool_alloc(struct mmn_memory_pool *p)
{
	void **obj;

	/* Set once (pool_listed()); a stale false only costs pools_lock. */
	if (!__atomic_load_n(&p->listed, __ATOMIC_ACQUIRE) && !pool_listed(p))
		return NULL;
	/* Another thread may take the new chunk's objects first: grow again then. */
	while (!(obj = pool_pop(p)))
		if (pool_grow(p) < 0)
			return NULL;
	ASAN_UNPOISON_MEMORY_REGION(obj, p->size);
	memset(obj, 0, p->size);
	return obj;
}

void mmn__memory_pool_free(struct mmn_memory_pool *p, void *obj)
{
	if (!obj)
		return;
	ASAN_POISON_MEMORY_REGION((void **)obj + 1, room(p) - sizeof(void *));
	pthread_mutex_lock(&p->lock);
	*(void **)obj = p->free;
	p->free = obj;
	pthread_mutex_unlock(&p->lock);
}
