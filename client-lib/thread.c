/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The library's dispatch thread.  It must never page-fault (see the
 * self-subscription rule in mmn.h): its stack is mapped populated and locked
 * (best effort: RLIMIT_MEMLOCK may refuse, then it is only pre-faulted), it
 * blocks every signal (no handler of the host can run on it and fault), and
 * the dispatch path reads into the client's own locked buffers without
 * allocating.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#define STACK_SIZE (256 * 1024)

static void *thread_main(void *arg)
{
	struct mmn_client *c = arg;
	struct pollfd p[2] = { { .fd = c->epfd, .events = POLLIN }, { .fd = c->stopfd, .events = POLLIN } };

	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			mmn_dispatch(c);
	}
	return NULL;
}

MMN_EXPORT int mmn_start_thread(struct mmn_client *c)
{
	size_t guard = (size_t)sysconf(_SC_PAGESIZE);
	sigset_t all, old;
	pthread_attr_t attr;
	int r;

	if (!c)
		return -EINVAL;
	if (mmn__forked(c))
		return -ECHILD;
	pthread_mutex_lock(&c->lock);
	if (c->thread_started) {
		pthread_mutex_unlock(&c->lock);
		return -EALREADY;
	}
	c->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stopfd < 0) {
		r = -errno;
		goto out;
	}
	c->stack_len = STACK_SIZE + guard;
	c->stack = mmap(NULL, c->stack_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_POPULATE, -1, 0);
	if (c->stack == MAP_FAILED) {
		c->stack = NULL;
		r = -ENOMEM;
		goto out_fd;
	}
	mprotect(c->stack, guard, PROT_NONE); /* stacks grow down: overflow faults instead of corrupting */
	if (mlock((char *)c->stack + guard, STACK_SIZE) < 0)
		mmn__log(LOG_WARNING, "mmn: cannot lock the dispatch thread's stack (RLIMIT_MEMLOCK?): %m");
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, (char *)c->stack + guard, STACK_SIZE);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* inherited by the new thread */
	r = -pthread_create(&c->thread, &attr, thread_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r < 0)
		goto out_stack;
	c->thread_started = true;
	pthread_mutex_unlock(&c->lock);
	return 0;
out_stack:
	munmap(c->stack, c->stack_len);
	c->stack = NULL;
out_fd:
	close(c->stopfd);
	c->stopfd = -1;
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Stop and join the thread (not from the thread itself), free its stack. */
void mmn__thread_stop(struct mmn_client *c)
{
	if (c->thread_started) {
		mmn__kick(c->stopfd);
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
	if (c->stack) {
		munmap(c->stack, c->stack_len);
		c->stack = NULL;
	}
}
