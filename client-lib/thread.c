/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The library's dispatch thread.  It must never page-fault (see the
 * self-subscription rule in mmn.h): its stack is mapped populated, locked
 * (best effort: RLIMIT_MEMLOCK may refuse, then it is only pre-faulted) and
 * out of NUMA balancing like all the memory it touches (memory.h), it
 * blocks every signal (no handler of the host can run on it and fault), and
 * the dispatch path reads into the client's own locked buffers without
 * allocating.  The code it runs is locked too: a first execution of a text
 * page is a file page fault, and on kernels without per-VMA locks (6.1) that
 * needs the mmap lock the kernel may hold while it waits for our ack.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "client.h"
#include "dispatch.h"
#include "error.h"
#include "eventfd.h"
#include "fork.h"
#include "memory.h"
#include "mmn/mmn.h"
#include "thread.h"

#define STACK_SIZE (256 * 1024)

static bool named(const struct dl_phdr_info *info, const char *part)
{
	return info->dlpi_name && strstr(info->dlpi_name, part);
}

/*
 * The loaded objects whose code runs on the thread: libmmn and libprotobuf-c
 * get every segment locked; they and the C runtime (libc, the dynamic
 * loader) get their writable segments out of NUMA balancing (memory.h):
 * the thread writes their data (locks, errno's home, malloc's state).
 * Best effort.
 */
static int prepare_object(struct dl_phdr_info *info, size_t size, void *data)
{
	const void *self_base = data;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	bool ours = false, lock;

	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_LOAD &&
		    (const char *)self_base == (const char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr -
							      info->dlpi_phdr[i].p_offset))
			ours = true;
	lock = ours || named(info, "libprotobuf-c.so");
	if (!lock && !named(info, "libc.so") && !named(info, "ld-linux"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = (info->dlpi_addr + ph->p_vaddr) & ~(ps - 1);
		uintptr_t b = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + ps - 1) & ~(ps - 1);

		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_flags & PF_W)
			mmn__memory_exempt((void *)a, b - a);
		if (lock && mlock((void *)a, b - a) < 0)
			mmn__log(LOG_DEBUG, "mmn: cannot lock %s: %m", info->dlpi_name);
	}
	return 0;
}

static void *thread_main(void *arg)
{
	struct mmn_client *c = arg;
	struct pollfd p[2] = {{.fd = c->epfd, .events = POLLIN}, {.fd = c->stopfd, .events = POLLIN}};
	void *volatile first;

	/*
	 * Callbacks allocate and free (an RDMA cache's ibv_dereg_mr() frees).
	 * glibc attaches a malloc arena to a thread at its first malloc or
	 * free, creating one with mmap() when the others are taken: in a
	 * callback, while the kernel holds the mmap lock for the invalidation
	 * we are to ack, that mmap() would wait for the ack until the deadline.
	 * So the arena is attached here, before the first event (volatile: the
	 * pair must not be optimised away).
	 */
	first = malloc(1);
	free(first);
	mmn__memory_exempt_thread();
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			mmn__dispatch(c, MMN_THREAD_BUDGET);
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
	mmn__memory_exempt((char *)c->stack + guard, STACK_SIZE); /* it holds the thread's TLS too */
	{
		Dl_info di;

		if (dladdr((void *)mmn_start_thread, &di) && di.dli_fbase)
			dl_iterate_phdr(prepare_object, di.dli_fbase);
	}
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
		mmn__eventfd_signal(c->stopfd);
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
	if (c->stack) {
		munmap(c->stack, c->stack_len);
		c->stack = NULL;
	}
}
