/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork() handling.  A child must not talk on its parent's connection: its
 * copies of the sockets are closed and every client of the parent answers
 * -ECHILD in it.
 *
 * The uffd source needs nothing more.  With UFFD_FEATURE_EVENT_FORK, fork()
 * sleeps until mmnd has read the fork event or the uffd is released; the
 * client keeps no descriptor of its uffd (uffd.c), so neither the parent nor
 * the child's copy of the descriptor table holds it, and if mmnd dies its
 * descriptor, the only one, goes with it: the uffd is released and fork()
 * returns.
 *
 * The inline readers of mmn.h (mmn_read_begin/retry) ask nothing of this
 * file: the child's copy of each client's sequence page region becomes
 * zeros, which no subscription's gen matches, so its readers fall to the
 * slow path (which answers as in a child: a value no word ever holds), and
 * read_retry compares 0 (or the always-odd parked word) with a value of
 * gen >= 1 or with that one: a collision.  The parent's mapping is untouched.
 *
 * g_lock guards the client list; it is held from the prepare handler to the
 * parent/child handler, so the child sees a consistent list.  The child
 * reads c->sp_addr/sp_len without c->lock: it has one thread, and a region a
 * published sub points into was stored before that sub was published.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"
#include "fork.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static struct mmn_client *g_clients;
static unsigned g_fork_gen;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&g_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&g_lock);
}

/*
 * The child's readers must not see the parent's page.  Replacing a whole
 * mapping fails only when the kernel refuses a small allocation; then the
 * region becomes unreadable rather than answer with the parent's page.
 */
static void hide_seqpage(struct mmn_client *c)
{
	if (!c->sp_addr)
		return;
	if (mmap(c->sp_addr, c->sp_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
	    MAP_FAILED)
		mprotect(c->sp_addr, c->sp_len, PROT_NONE);
}

static void atfork_child(void)
{
	__atomic_add_fetch(&g_fork_gen, 1, __ATOMIC_RELEASE);
	for (struct mmn_client *c = g_clients; c; c = c->gnext) {
		int sock = __atomic_exchange_n(&c->sock, -1, __ATOMIC_ACQ_REL);

		if (sock >= 0)
			close(sock);
		hide_seqpage(c);
	}
	pthread_mutex_unlock(&g_lock);
}

static void global_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

bool mmn__forked(const struct mmn_client *c)
{
	return c->fork_gen != __atomic_load_n(&g_fork_gen, __ATOMIC_ACQUIRE);
}

/* sock is taken by the child handler without c->lock. */
void mmn__global_set_fd(int *where, int fd)
{
	__atomic_store_n(where, fd, __ATOMIC_RELEASE);
}

void mmn__global_add(struct mmn_client *c)
{
	pthread_once(&g_once, global_init);
	pthread_mutex_lock(&g_lock);
	c->fork_gen = g_fork_gen;
	c->gnext = g_clients;
	if (g_clients)
		g_clients->gprev = c;
	g_clients = c;
	pthread_mutex_unlock(&g_lock);
}

void mmn__global_del(struct mmn_client *c)
{
	pthread_mutex_lock(&g_lock);
	if (c->gprev)
		c->gprev->gnext = c->gnext;
	else if (g_clients == c)
		g_clients = c->gnext;
	if (c->gnext)
		c->gnext->gprev = c->gprev;
	c->gnext = c->gprev = NULL;
	pthread_mutex_unlock(&g_lock);
}
