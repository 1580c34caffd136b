/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork() handling.  A child must not talk on its parent's connection, and it
 * must not keep the parent's userfaultfd alive: mmnd has to be the only one
 * holding it besides the parent, or a dead mmnd could never be replaced.
 *
 * The uffd source adds a trap: with UFFD_FEATURE_EVENT_FORK, fork() waits
 * until mmnd has read the fork event, and the child's descriptor table (copied
 * before that wait) would hold the uffd too, so if mmnd is dead the wait never
 * ends.  Hence, around fork(), every client's uffd is taken out of the
 * descriptor table: prepare sends it to the client's own stash socketpair
 * (in flight, not in any table) and puts /dev/null at its number; the parent
 * handler puts it back.  If mmnd dies meanwhile, the dispatching thread
 * drains the stash (mmn__uffd_drain_stash), the uffd is released and fork()
 * returns.  If mmnd is already gone (its socket hung up) prepare just drops
 * the uffd.  See uffd.c.
 *
 * g_lock guards the client list; it is held from prepare to the parent/child
 * handler, and each client's uffd_lock with it (order: g_lock, uffd_lock).
 */
#include <poll.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static struct mmn_client *g_clients;
static unsigned g_fork_gen;

/* mmnd is gone: its socket hung up, or the connection is being torn down. */
static bool hung_up(int sock)
{
	struct pollfd p = {.fd = sock, .events = POLLIN | POLLRDHUP};

	return sock < 0 || (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)));
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&g_lock);
	for (struct mmn_client *c = g_clients; c; c = c->gnext) {
		pthread_mutex_lock(&c->uffd_lock);
		if (c->uffd >= 0)
			mmn__uffd_stash(c, hung_up(__atomic_load_n(&c->sock, __ATOMIC_ACQUIRE)));
	}
}

static void atfork_parent(void)
{
	for (struct mmn_client *c = g_clients; c; c = c->gnext) {
		mmn__uffd_unstash(c);
		pthread_mutex_unlock(&c->uffd_lock);
	}
	pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void)
{
	__atomic_add_fetch(&g_fork_gen, 1, __ATOMIC_RELEASE);
	for (struct mmn_client *c = g_clients; c; c = c->gnext) {
		int sock = __atomic_exchange_n(&c->sock, -1, __ATOMIC_ACQ_REL);
		int fds[] = {sock, c->uffd, c->stash[0], c->stash[1]};

		for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
			if (fds[i] >= 0)
				close(fds[i]);
		c->uffd = c->stash[0] = c->stash[1] = -1;
		c->stashed = false;
		pthread_mutex_unlock(&c->uffd_lock);
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

/* sock is read by the prepare handler without c->lock. */
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
