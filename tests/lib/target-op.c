// SPDX-License-Identifier: GPL-2.0
/* Memory operations a target performs on request (see target-op.h). */
#include "target-op.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "churn.h"

#define PAGE 4096UL
#define HUGE (2UL << 20)

static uint64_t map(uint64_t len, uint64_t arg)
{
	char *p;

	if (arg != 1) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		return p == MAP_FAILED ? 0 : (uint64_t)p;
	}
	p = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	char *a = (char *)(((uintptr_t)p + HUGE - 1) & ~(HUGE - 1));

	if (a > p)
		munmap(p, a - p);
	munmap(a + len, p + len + HUGE - (a + len));
	madvise(a, len, MADV_HUGEPAGE);
	memset(a, 1, len);
	return (uint64_t)a;
}

static void touch(uint64_t addr, uint64_t len)
{
	for (uint64_t o = 0; o < len; o += PAGE)
		((volatile char *)addr)[o] = 1;
}

/* munmap/mmap/mprotect/fault in [addr, addr + len) for arg seconds */
static long loop(uint64_t addr, uint64_t len, uint64_t secs)
{
	int64_t end = (int64_t)mono_ns() + (int64_t)secs * 1000000000;
	unsigned int seed = getpid();
	long n = 0;

	while ((int64_t)mono_ns() < end) {
		uint64_t off = (rand_r(&seed) % (len / PAGE)) * PAGE;
		char *p = (char *)(addr + off);

		churn_page(p, PAGE, (unsigned)rand_r(&seed));
		n++;
	}
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static long bench(uint64_t addr, uint64_t n, uint64_t *median, uint64_t *mean)
{
	uint64_t *t = calloc(n ? n : 1, sizeof(*t)), sum = 0;

	if (!t || !n)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		char *p = mmap((void *)addr, PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		int64_t t0;

		if (p == MAP_FAILED)
			return -1;
		*(volatile char *)p = 1;
		t0 = (int64_t)mono_ns();
		munmap(p, PAGE);
		t[i] = (uint64_t)((int64_t)mono_ns() - t0);
		sum += t[i];
	}
	qsort(t, n, sizeof(*t), cmp_u64);
	*median = t[n / 2];
	*mean = sum / n;
	free(t);
	return 0;
}

static uint64_t move_pages_to(uint64_t addr, uint64_t len, int node, int64_t *ret)
{
	uint64_t n = len / PAGE, first;
	void **pages = calloc(n, sizeof(void *));
	int *nodes = calloc(n, sizeof(int));
	int *status = calloc(n, sizeof(int));

	for (uint64_t i = 0; i < n; i++) {
		pages[i] = (void *)(addr + i * PAGE);
		nodes[i] = node;
	}
	*ret = syscall(SYS_move_pages, 0, n, pages, nodes, status, 0);
	first = n ? (uint64_t)status[0] : 0;
	free(pages);
	free(nodes);
	free(status);
	return first;
}

static int64_t fork_and_wait(void)
{
	pid_t p = fork();

	if (p == 0)
		_exit(0);
	return p < 0 ? -1 : waitpid(p, NULL, 0) == p ? 0 : -1;
}

/* One operation; errno is the operation's.  T_EXEC and T_EXIT do not return. */
static void obey(const struct target_cmd *c, struct target_res *r)
{
	switch (c->op) {
	case T_MMAP:
		r->val = map(c->len, c->arg);
		r->ret = r->val ? 0 : -1;
		break;
	case T_MUNMAP:
		r->ret = munmap((void *)c->addr, c->len);
		break;
	case T_MPROTECT:
		r->ret = mprotect((void *)c->addr, c->len, (int)c->arg);
		break;
	case T_MADVISE:
		r->ret = madvise((void *)c->addr, c->len, (int)c->arg);
		break;
	case T_MREMAP:
		r->val = (uint64_t)mremap((void *)c->addr, c->len, c->len,
					  MREMAP_MAYMOVE | MREMAP_FIXED, (void *)c->arg);
		r->ret = r->val == (uint64_t)MAP_FAILED ? -1 : 0;
		break;
	case T_TOUCH:
		touch(c->addr, c->len);
		break;
	case T_FORK:
		r->ret = fork_and_wait();
		break;
	case T_EXEC:
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	case T_EXIT:
		_exit(0);
	case T_MERGEABLE:
		memset((void *)c->addr, 0x5a, c->len);
		r->ret = madvise((void *)c->addr, c->len, MADV_MERGEABLE);
		break;
	case T_MOVE_PAGES:
		r->val = move_pages_to(c->addr, c->len, (int)c->arg, &r->ret);
		break;
	case T_BENCH:
		r->ret = bench(c->addr, c->len, &r->val, &r->val2);
		break;
	case T_LOOP:
		r->val = (uint64_t)loop(c->addr, c->len, c->arg);
		break;
	default:
		r->ret = -1;
		errno = EINVAL;
	}
}

/* The target's body: obey commands until EOF. */
static void child(int cfd, int rfd, char *p, size_t len)
{
	struct target_cmd c;
	struct target_res r;

	(void)p;
	(void)len;
	while (read(cfd, &c, sizeof(c)) == sizeof(c)) {
		memset(&r, 0, sizeof(r));
		r.t0 = (int64_t)mono_ns();
		errno = 0;
		obey(&c, &r);
		r.err = errno;
		r.t1 = (int64_t)mono_ns();
		if (write(rfd, &r, sizeof(r)) != sizeof(r))
			_exit(1);
	}
	_exit(0);
}

int target_op_start(struct target *t)
{
	return target_spawn(t, 0, TARGET_NO_MAP | TARGET_CLOSE_FDS, child);
}

int target_op_send(struct target *t, int op, uint64_t addr, uint64_t len, uint64_t arg)
{
	struct target_cmd c = { .op = op, .addr = addr, .len = len, .arg = arg };

	return write(t->cmd, &c, sizeof(c)) == sizeof(c) ? 0 : -EPIPE;
}

int target_op_recv(struct target *t, struct target_res *r, int timeout_ms)
{
	struct pollfd p = { .fd = t->rep, .events = POLLIN };
	ssize_t n;
	int k = poll(&p, 1, timeout_ms);

	if (k < 0)
		return -errno;
	if (k == 0)
		return 0;
	n = read(t->rep, r, sizeof(*r));
	return n == sizeof(*r) ? 1 : -EPIPE;
}

int64_t target_op_do(struct target *t, int op, uint64_t addr, uint64_t len, uint64_t arg,
		     struct target_res *r)
{
	struct target_res tmp;

	if (!r)
		r = &tmp;
	if (target_op_send(t, op, addr, len, arg) || target_op_recv(t, r, 120000) != 1)
		return -999;
	return r->ret;
}

int target_op_stop(struct target *t)
{
	int st = -1;

	if (t->pid <= 0)
		return -1;
	target_op_send(t, T_EXIT, 0, 0, 0);
	close(t->cmd);
	close(t->rep);
	if (waitpid(t->pid, &st, 0) != t->pid)
		st = -1;
	t->pid = 0;
	return st;
}
