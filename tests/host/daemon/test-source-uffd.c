/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uffd source on its own, without the broker: real kernel events from
 * munmap, madvise, mremap, fork and a target's exit, turned into
 * SOURCE_INVALIDATE/_END pairs clipped to each ksub.
 *
 * The test process is the client (it creates and registers the uffd) and
 * runs the source's loop in its main thread.  The kernel puts the thread
 * that munmaps to sleep until the event is read, so every memory operation
 * runs on a second thread (or in a child) while the main thread runs the
 * loop; the operation's return tells the loop that its events were read.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <uv.h>

#include "mmn.pb-c.h"
#include "procstat.h"
#include "source.h"
#include "tap.h"
#include "uffd-client.h"

#define MAXREC	64
#define MAXSUBS 8
#define WAIT_MS 10000 /* failure detection only, never synchronisation */

struct rec {
	struct source_event ev;
	struct source_event_sub subs[MAXSUBS];
};

static uv_loop_t loop;
static struct source *src;
static struct rec recs[MAXREC];
static size_t nrecs;
static uint32_t del_on_invalidate; /* ksub the emit callback deletes, to test reentrancy */
static long P;			   /* page size */
static char *base;		   /* 32 registered pages */

static void emit(const struct source_event *ev, void *ud)
{
	struct rec *r;

	if (nrecs == MAXREC)
		return;
	r = &recs[nrecs++];
	r->ev = *ev;
	memcpy(r->subs, ev->subs, (ev->nsubs < MAXSUBS ? ev->nsubs : MAXSUBS) * sizeof(r->subs[0]));
	r->ev.subs = r->subs;
	if (ev->kind == SOURCE_INVALIDATE && del_on_invalidate) {
		tap_is_int(src->ops->ksub_del(src, del_on_invalidate), 0,
			   "ksub_del from inside the emit callback");
		del_on_invalidate = 0;
	}
}

/* ---- running the loop until something happened ---- */

static bool timed_out;

static void timeout_cb(uv_timer_t *t)
{
	timed_out = true;
}

#define WAIT_UNTIL(cond)                                                                                     \
	({                                                                                                   \
		uv_timer_t _t;                                                                               \
		timed_out = false;                                                                           \
		uv_timer_init(&loop, &_t);                                                                   \
		uv_timer_start(&_t, timeout_cb, WAIT_MS, 0);                                                 \
		while (!(cond) && !timed_out)                                                                \
			uv_run(&loop, UV_RUN_ONCE);                                                          \
		uv_close((uv_handle_t *)&_t, NULL);                                                          \
		uv_run(&loop, UV_RUN_NOWAIT);                                                                \
		!timed_out;                                                                                  \
	})

/* ---- memory operations on a second thread ---- */

struct op {
	void (*fn)(void *);
	void *arg;
	atomic_int done;
	uv_async_t async;
};

static void *op_thread(void *p)
{
	struct op *o = p;

	o->fn(o->arg);
	atomic_store(&o->done, 1);
	uv_async_send(&o->async);
	return NULL;
}

static void op_async_cb(uv_async_t *a)
{
}

/* Run @fn on a thread while the loop reads its events; true when it returned. */
static bool run_op(void (*fn)(void *), void *arg)
{
	struct op o = {.fn = fn, .arg = arg};
	pthread_t th;
	bool ok;

	uv_async_init(&loop, &o.async, op_async_cb);
	if (pthread_create(&th, NULL, op_thread, &o) != 0) {
		uv_close((uv_handle_t *)&o.async, NULL);
		return false;
	}
	ok = WAIT_UNTIL(atomic_load(&o.done));
	if (ok)
		pthread_join(th, NULL);
	else
		pthread_detach(th); /* stuck in the kernel: the test fails and exits */
	uv_close((uv_handle_t *)&o.async, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return ok;
}

struct range {
	long first, npages; /* in pages of base */
	long dest;	    /* mremap */
};

static void do_munmap(void *p)
{
	struct range *r = p;

	munmap(base + r->first * P, r->npages * P);
}

static void do_dontneed(void *p)
{
	struct range *r = p;

	madvise(base + r->first * P, r->npages * P, MADV_DONTNEED);
}

static void do_free(void *p)
{
	struct range *r = p;

	madvise(base + r->first * P, r->npages * P, MADV_FREE);
}

static void *remap_dest;

static void do_mremap(void *p)
{
	struct range *r = p;

	remap_dest = mremap(base + r->first * P, r->npages * P, r->npages * P, MREMAP_MAYMOVE | MREMAP_FIXED,
			    remap_dest);
}

static void do_fork(void *p)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

static void do_write(void *p)
{
	*(volatile char *)p = 42;
}

/* ---- checks ---- */

static uint64_t A(long page)
{
	return (uint64_t)(uintptr_t)base + (uint64_t)page * (uint64_t)P;
}

struct want_sub {
	uint32_t id;
	uint64_t start, end;
};

/* recs[i] and recs[i + 1] are one INVALIDATE and its END with exactly @want (in order). */
static void check_pair(size_t i, const char *what, uint32_t event, uint64_t rs, uint64_t re,
		       const struct want_sub *want, size_t nwant, size_t nwant_end)
{
	char name[160];
	size_t k;

	snprintf(name, sizeof(name), "%s: INVALIDATE then INVALIDATE_END", what);
	if (!tap_ok(nrecs >= i + 2 && recs[i].ev.kind == SOURCE_INVALIDATE &&
			    recs[i + 1].ev.kind == SOURCE_INVALIDATE_END,
		    "%s", name)) {
		tap_diag("  nrecs %zu", nrecs);
		return;
	}
	snprintf(name, sizeof(name), "%s: event type", what);
	tap_is_int(recs[i].ev.event, event, name);
	snprintf(name, sizeof(name), "%s: END has the same event_id", what);
	tap_is_u64(recs[i + 1].ev.event_id, recs[i].ev.event_id, name);
	snprintf(name, sizeof(name), "%s: unclipped range", what);
	tap_ok(recs[i].ev.range_start == rs && recs[i].ev.range_end == re, "%s", name);
	snprintf(name, sizeof(name), "%s: no ack, blockable, pid", what);
	tap_ok(!recs[i].ev.needs_ack && recs[i].ev.blockable && !recs[i].ev.refused, "%s", name);
	snprintf(name, sizeof(name), "%s: number of ksubs", what);
	tap_is_int(recs[i].ev.nsubs, nwant, name);
	for (k = 0; k < nwant && k < recs[i].ev.nsubs; k++) {
		const struct source_event_sub *s = &recs[i].subs[k];

		snprintf(name, sizeof(name), "%s: ksub %u clipped to [0x%llx, 0x%llx)", what, want[k].id,
			 (unsigned long long)want[k].start, (unsigned long long)want[k].end);
		if (!tap_ok(s->ksub_id == want[k].id && s->start == want[k].start && s->end == want[k].end,
			    "%s", name))
			tap_diag("  got ksub %u [0x%llx, 0x%llx)", s->ksub_id, (unsigned long long)s->start,
				 (unsigned long long)s->end);
	}
	snprintf(name, sizeof(name), "%s: END lists the live ksubs", what);
	tap_is_int(recs[i + 1].ev.nsubs, nwant_end, name);
	for (k = 0; k < nwant_end && k < recs[i + 1].ev.nsubs; k++)
		if (recs[i + 1].subs[k].ksub_id != want[k].id)
			tap_ok(0, "%s: END ksub %zu is %u", what, k, want[k].id);
}

/* ---- a second process as the target: cross-process attach and exit ---- */

static void child_target(int sock)
{
	char *m = mmap(NULL, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t features, addr = (uint64_t)(uintptr_t)m;
	int fd = uffd_client_open(&features);
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {&addr, sizeof(addr)};
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	char cmd;

	if (m == MAP_FAILED || fd < 0 || uffd_client_register(fd, addr, 8 * (uint64_t)P) < 0)
		_exit(1);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &mh, 0) < 0)
		_exit(1);
	close(fd); /* like libmmn: mmnd holds the only reference */
	while (read(sock, &cmd, 1) == 1) {
		if (cmd == 'u') {
			munmap(m + P, P); /* returns once the loop read the event */
			if (write(sock, "k", 1) != 1)
				_exit(1);
		} else {
			_exit(0);
		}
	}
	_exit(0);
}

static bool sock_readable;

static void sock_cb(uv_poll_t *h, int status, int events)
{
	sock_readable = true;
	uv_poll_stop(h);
}

static void test_other_process(void)
{
	struct source_target st = {0};
	uint64_t addr = 0;
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {&addr, sizeof(addr)};
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	uv_poll_t poll;
	uint32_t id = 0;
	int sv[2], fd = -1, status = -1;
	size_t n0;
	pid_t pid;
	char k;

	tap_require(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		child_target(sv[1]);
	}
	tap_require(pid > 0);
	close(sv[1]);
	tap_require(recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC) == sizeof(addr));
	c = CMSG_FIRSTHDR(&mh);
	tap_require(c && c->cmsg_type == SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(c), sizeof(int));

	st.pid = pid;
	st.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	st.uffd = -1;
	tap_require(st.pidfd >= 0);
	tap_is_int(src->ops->attach_uffd(src, &st, fd), 0, "other process: attach its uffd");
	tap_is_int(src->ops->ksub_add(src, &st, addr, 4 * (uint64_t)P, true, 0, &id), 0,
		   "other process: ksub over its first 4 pages");

	n0 = nrecs;
	uv_poll_init(&loop, &poll, sv[0]);
	sock_readable = false;
	uv_poll_start(&poll, UV_READABLE, sock_cb);
	tap_require(write(sv[0], "u", 1) == 1);
	tap_ok(WAIT_UNTIL(sock_readable), "other process: its munmap returned");
	tap_require(read(sv[0], &k, 1) == 1);
	check_pair(n0, "other process munmap", MMN__V1__EVENT_TYPE__EVENT_UNMAP, addr + P, addr + 2 * P,
		   (struct want_sub[]){{id, addr + P, addr + 2 * P}}, 1, 1);
	tap_is_int(recs[n0].ev.pid, pid, "other process: event names the target's pid");

	n0 = nrecs;
	tap_require(write(sv[0], "x", 1) == 1);
	tap_ok(WAIT_UNTIL(nrecs > n0), "other process: its exit is reported");
	tap_ok(nrecs == n0 + 1 && recs[n0].ev.kind == SOURCE_RELEASE && recs[n0].ev.nsubs == 1 &&
		       recs[n0].subs[0].ksub_id == id,
	       "other process: exit -> SOURCE_RELEASE for its ksub");
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "other process: exited cleanly");
	tap_is_int(src->ops->ksub_add(src, &st, addr, (uint64_t)P, false, 0, &id), -ESRCH,
		   "other process: ksub_add after its exit -> -ESRCH");
	tap_is_int(src->ops->ksub_del(src, id), 0, "other process: ksub_del after RELEASE");
	src->ops->detach_uffd(src, pid, 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	tap_is_int(nrecs, n0 + 1, "other process: nothing more after detach");

	uv_close((uv_handle_t *)&poll, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	close(st.pidfd);
	close(sv[0]);
}

/*
 * Over 80 lines on purpose: one source instance driven through its whole
 * life in order (caps, refusals, ksubs, each kind of event, fork, EMFILE,
 * detach, destroy), each step asserting on the ksubs and records the
 * previous ones left; the cross-process steps are functions above.
 */
/* ---- the cases, in order, on one source and the test's own uffd ---- */

static struct source_target self; /* this process, as the source knows it */
static uint32_t ka, kb, kd, ke;	  /* ksubs [2,6), [8,12), [4,10), [20,24) */
static int ctl;			  /* the test's own handle of the uffd, for UFFDIO_WRITEPROTECT */
static bool fork_ok;		  /* the uffd reports fork (UFFD_FEATURE_EVENT_FORK) */

/* Capabilities; ksub_add without a uffd, and uffds the source refuses. */
static void test_caps_and_refusals(void)
{
	uint32_t id;
	int pfd[2], raw;

	tap_is_str(src->caps.name, "uffd", "caps: name");
	tap_is_u64(src->caps.event_mask, 1u << 0 | 1u << 3 | 1u << 8 | 1u << 9,
		   "caps: UNMAP, PROTECTION_PAGE, REMOVE, REMAP");
	tap_ok(!src->caps.acks_hold_kernel && !src->caps.events_before_change && src->caps.needs_uffd &&
		       !src->caps.other_processes,
	       "caps: acks do not hold the kernel, events after the change, needs a uffd, self only");

	/* Before any uffd: not watchable. */
	tap_is_int(src->ops->ksub_add(src, &self, 0x10000, 0x1000, true, 0, &id), -EOPNOTSUPP,
		   "ksub_add without an attached uffd -> -EOPNOTSUPP");

	/* Not a uffd: refused, and consumed. */
	tap_require(pipe2(pfd, O_CLOEXEC) == 0);
	tap_is_int(src->ops->attach_uffd(src, &self, pfd[0]), -EINVAL, "attach a pipe -> -EINVAL");
	tap_ok(fcntl(pfd[0], F_GETFD) < 0 && errno == EBADF, "the refused fd was closed by the source");
	close(pfd[1]);
	raw = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	tap_is_int(src->ops->attach_uffd(src, &self, raw), -EINVAL,
		   "attach a uffd without UFFDIO_API events -> -EINVAL");
}

/* The registered region, the uffd @fd attached, bad ksubs refused, ka..ke added. */
static void test_attach(int fd)
{
	uint32_t id;

	/* 48 pages, the first 32 registered; the rest are spare room that no mmap() can land in. */
	base = mmap(NULL, 48 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(base != MAP_FAILED);
	memset(base, 1, 48 * P);
	tap_require(uffd_client_register(fd, A(0), 32 * (uint64_t)P) == 0);
	ctl = dup(fd);
	tap_is_int(src->ops->attach_uffd(src, &self, fd), 0, "attach the uffd");

	tap_is_int(src->ops->ksub_add(src, &self, A(0), 0, true, 0, &id), -EINVAL,
		   "ksub_add length 0 -> -EINVAL");
	tap_is_int(src->ops->ksub_add(src, &self, UINT64_MAX - 0xfff, 0x2000, true, 0, &id), -EINVAL,
		   "ksub_add overflowing range -> -EINVAL");
	tap_is_int(src->ops->ksub_add(src, &self, 1ULL << 62, 0x1000, true, 0, &id), -EINVAL,
		   "ksub_add past the user address space -> -EINVAL");
	tap_require(src->ops->ksub_add(src, &self, A(2), 4 * (uint64_t)P, true, 0, &ka) == 0);  /* [2,6)  */
	tap_require(src->ops->ksub_add(src, &self, A(8), 4 * (uint64_t)P, false, 0, &kb) == 0); /* [8,12) */
	tap_require(src->ops->ksub_add(src, &self, A(4), 6 * (uint64_t)P, true, 0, &kd) == 0);  /* [4,10) */
	tap_require(src->ops->ksub_add(src, &self, A(20), 4 * (uint64_t)P, true, 0, &ke) == 0); /* [20,24) */
	tap_ok(ka && kb && kd && ke && ka != kb && kb != kd && kd != ke && ka != ke,
	       "ksub ids are distinct and non-zero");
}

/* munmap, madvise and mremap: one pair each, clipped to the ksubs they touch. */
static void test_events(void)
{
	struct range r;
	size_t n0;

	/* munmap [5,9): one event, clipped to A, D and B, in ascending start. */
	n0 = nrecs;
	r = (struct range){5, 4, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [5,9) returned");
	tap_is_int(nrecs - n0, 2, "munmap: exactly one pair");
	check_pair(n0, "munmap", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(5), A(9),
		   (struct want_sub[]){{ka, A(5), A(6)}, {kd, A(5), A(9)}, {kb, A(8), A(9)}}, 3, 3);

	/* madvise(MADV_DONTNEED) [10,11): REMOVE on B only. */
	n0 = nrecs;
	r = (struct range){10, 1, 0};
	tap_ok(run_op(do_dontneed, &r), "madvise(DONTNEED) returned");
	tap_is_int(nrecs - n0, 2, "madvise: exactly one pair");
	check_pair(n0, "madvise", MMN__V1__EVENT_TYPE__EVENT_REMOVE, A(10), A(11),
		   (struct want_sub[]){{kb, A(10), A(11)}}, 1, 1);

	/* madvise(MADV_FREE) [20,21): REMOVE on E. */
	n0 = nrecs;
	r = (struct range){20, 1, 0};
	tap_ok(run_op(do_free, &r), "madvise(FREE) returned");
	tap_is_int(nrecs - n0, 2, "madvise(FREE): exactly one pair");
	check_pair(n0, "madvise(FREE)", MMN__V1__EVENT_TYPE__EVENT_REMOVE, A(20), A(21),
		   (struct want_sub[]){{ke, A(20), A(21)}}, 1, 1);

	/* mremap [11,12) to an unregistered page: REMAP on the old range. */
	remap_dest = base + 40 * P; /* mapped, not registered */
	n0 = nrecs;
	r = (struct range){11, 1, 0};
	tap_ok(run_op(do_mremap, &r) && remap_dest != MAP_FAILED, "mremap returned");
	/* Linux (6.1 and 6.18 alike) queues REMAP, then an UNMAP of the old range (move_vma). */
	tap_is_int(nrecs - n0, 4, "mremap: two pairs");
	check_pair(n0, "mremap", MMN__V1__EVENT_TYPE__EVENT_REMAP, A(11), A(12),
		   (struct want_sub[]){{kb, A(11), A(12)}}, 1, 1);
	check_pair(n0 + 2, "mremap's unmap of the old range", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(11), A(12),
		   (struct want_sub[]){{kb, A(11), A(12)}}, 1, 1);
	tap_ok(*(volatile char *)remap_dest == 1, "mremap moved the page's contents");
}

/* Where no ksub is: the event is read (the munmap returns), nothing emitted. */
static void test_no_ksub(void)
{
	struct range r;
	size_t n0;

	/* The moved page stays registered: unmapping it waits for the loop too. */
	n0 = nrecs;
	r = (struct range){((char *)remap_dest - base) / P, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap of the moved page returned");
	tap_is_int(nrecs, n0, "munmap of the moved page (no ksub there): no event");

	n0 = nrecs;
	r = (struct range){13, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [13,14) returned");
	tap_is_int(nrecs, n0, "munmap outside every ksub: no event");
}

/* fork while mmnd's fd table is full: the read needs a slot for the child's uffd. */
static void test_fork_emfile(int fds1)
{
	struct rlimit old, low;
	int fill[256], nfill = 0;
	size_t n0;

	tap_require(getrlimit(RLIMIT_NOFILE, &old) == 0);
	low = old;
	low.rlim_cur = 128;
	tap_require(setrlimit(RLIMIT_NOFILE, &low) == 0);
	while (nfill < 256) {
		int nf = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (nf < 0)
			break;
		fill[nfill++] = nf;
	}
	n0 = nrecs;
	tap_ok(errno == EMFILE && run_op(do_fork, NULL), "fork with no free fd in the reader returned");
	tap_is_int(nrecs - n0, 2, "fork under EMFILE: reported (the reserve fd made room)");
	while (nfill)
		close(fill[--nfill]);
	setrlimit(RLIMIT_NOFILE, &old);
	tap_is_int(procstat_fds(getpid()), fds1, "fork under EMFILE: no fd leaked, the reserve is back");
}

/* fork: PROTECTION_PAGE over every ksub, whole; the child's uffd is closed. */
static void test_fork(void)
{
	size_t n0 = nrecs;
	int fds1 = procstat_fds(getpid());

	tap_ok(run_op(do_fork, NULL), "fork returned");
	if (fork_ok) {
		tap_is_int(nrecs - n0, 2, "fork: exactly one pair");
		check_pair(n0, "fork", MMN__V1__EVENT_TYPE__EVENT_PROTECTION_PAGE, A(2), A(24),
			   (struct want_sub[]){
				   {ka, A(2), A(6)}, {kd, A(4), A(10)}, {kb, A(8), A(12)}, {ke, A(20), A(24)}},
			   4, 4);
	} else {
		tap_is_int(nrecs, n0, "fork without EVENT_FORK: no event (documented weakness)");
	}
	tap_is_int(procstat_fds(getpid()), fds1, "fork: the child's uffd was closed, no fd leaked");
	if (fork_ok)
		test_fork_emfile(fds1);
}

/* A page fault; ksub_del, also from inside INVALIDATE (END lists only the live ksub). */
static void test_fault_and_del(void)
{
	struct uffdio_writeprotect wp = {.range = {A(21), (uint64_t)P}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	struct range r;
	uint32_t f;
	size_t n0;

	/* A page fault (the client write-protected a page itself): resolved, the writer returns. */
	n0 = nrecs;
	tap_is_int(ioctl(ctl, UFFDIO_WRITEPROTECT, &wp), 0, "client write-protects a page");
	tap_ok(run_op(do_write, base + 21 * P), "a write fault on it is resolved, the writer returns");
	tap_ok(base[21 * P] == 42, "the write landed");
	tap_is_int(nrecs, n0, "a page fault emits no invalidation");

	/* ksub_del, then an event only the remaining ksub sees. */
	tap_is_int(src->ops->ksub_del(src, kd), 0, "ksub_del");
	tap_is_int(src->ops->ksub_del(src, kd), -ENOENT, "ksub_del twice -> -ENOENT");
	n0 = nrecs;
	r = (struct range){4, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [4,5) returned");
	check_pair(n0, "munmap after ksub_del", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(4), A(5),
		   (struct want_sub[]){{ka, A(4), A(5)}}, 1, 1);

	/* The broker deletes a listed ksub from inside INVALIDATE: END lists only the live one. */
	tap_require(src->ops->ksub_add(src, &self, A(22), 8 * (uint64_t)P, true, 0, &f) == 0); /* [22,30) */
	del_on_invalidate = f;
	n0 = nrecs;
	r = (struct range){22, 2, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [22,24) returned");
	check_pair(n0, "munmap with reentrant ksub_del", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(22), A(24),
		   (struct want_sub[]){{ke, A(22), A(24)}, {f, A(22), A(24)}}, 2, 1);
	tap_is_int(src->ops->ksub_del(src, f), -ENOENT, "the reentrantly deleted ksub is gone");
}

/*
 * A second connection @two of the same process attaches its own uffd for
 * another range at @r2; mmnd registers for it (the library keeps no copy).
 * Its ksub there: the result.
 */
static uint32_t test_second_uffd(struct source_target *two, char *r2)
{
	uint64_t f2, a2 = (uint64_t)(uintptr_t)r2;
	int fd2 = uffd_client_open(&f2);
	struct range r;
	uint32_t g;
	size_t n0;

	tap_require(fd2 >= 0);
	tap_is_int(src->ops->attach_uffd(src, two, fd2), 0, "a second uffd for the same pid");
	tap_is_int(src->ops->uffd_register(src, getpid(), 3, a2, a2 + 4 * (uint64_t)P, true), -ENOTCONN,
		   "uffd_register for a connection without a uffd -> -ENOTCONN");
	tap_is_int(src->ops->uffd_register(src, getpid(), 2, A(30), A(34), true), -EBUSY,
		   "uffd_register (strict) over the first uffd's range -> -EBUSY");
	tap_is_int(src->ops->uffd_register(src, getpid(), 2, a2, a2 + 4 * (uint64_t)P - 1, true), 0,
		   "uffd_register (strict) of its own range");
	tap_is_int(src->ops->uffd_register(src, getpid(), 2, a2, a2 + 2 * (uint64_t)P, true), 0,
		   "an overlapping registration");
	tap_require(src->ops->ksub_add(src, two, a2, 2 * (uint64_t)P, true, 0, &g) == 0);
	n0 = nrecs;
	r = (struct range){(r2 - base) / P, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap in the second uffd's range returned");
	check_pair(n0, "second uffd", MMN__V1__EVENT_TYPE__EVENT_UNMAP, a2, a2 + P,
		   (struct want_sub[]){{g, a2, a2 + P}}, 1, 1);
	/* Undo the wide one: the broker passes only what the narrow one does not cover, [46,48). */
	src->ops->uffd_unregister(src, getpid(), 2, a2 + 2 * (uint64_t)P, a2 + 4 * (uint64_t)P - 1);
	n0 = nrecs;
	r = (struct range){(r2 - base) / P + 3, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [47,48) returned");
	tap_is_int(nrecs, n0, "unregistered where no other registration covers it: no event");
	n0 = nrecs;
	r = (struct range){(r2 - base) / P + 1, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [45,46) returned");
	check_pair(n0, "still registered through the overlapping one", MMN__V1__EVENT_TYPE__EVENT_UNMAP,
		   a2 + P, a2 + 2 * P, (struct want_sub[]){{g, a2 + P, a2 + 2 * P}}, 1, 1);
	return g;
}

/*
 * [40,48) has holes now (40, 45, 47); foreign memory goes into the others:
 * 44 mapped again and registered with the first uffd, 47 a read-only
 * shared file mapping.
 */
static void map_foreign(char *r2)
{
	char path[64];
	int mfd = memfd_create("ro", MFD_CLOEXEC), ro;

	tap_require(mmap(r2, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == r2);
	tap_require(uffd_client_register(ctl, (uint64_t)(uintptr_t)r2, (uint64_t)P) == 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	tap_require(mfd >= 0 && ro >= 0 && ftruncate(mfd, P) == 0);
	tap_require(mmap(r2 + 3 * P, P, PROT_READ, MAP_SHARED | MAP_FIXED, ro, 0) == r2 + 3 * P);
	close(ro);
	close(mfd);
}

/*
 * Lenient registration over holes and foreign memory (-EBUSY at 44, -EPERM
 * at 47): what is ours to watch is registered, the rest skipped.  The
 * second connection's ksub over [40,48): the result.
 */
static uint32_t test_lenient(struct source_target *two, char *r2)
{
	struct range r;
	uint32_t f;
	size_t n0;

	map_foreign(r2);
	tap_is_int(src->ops->uffd_register(src, getpid(), 2, A(40), A(48), true), -EBUSY,
		   "uffd_register (strict) over another uffd's page -> -EBUSY");
	mmn__source_uffd_no_maps = true; /* as when mmnd may not read the client's maps */
	tap_is_int(src->ops->uffd_register(src, getpid(), 2, A(40), A(48), false), 0,
		   "uffd_register (lenient, by bisection) over holes and foreign memory");
	mmn__source_uffd_no_maps = false;
	tap_require(src->ops->ksub_add(src, two, A(40), 8 * (uint64_t)P, true, 0, &f) == 0);
	n0 = nrecs;
	r = (struct range){41, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [41,42) returned");
	check_pair(n0, "lenient registration by bisection", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(41), A(42),
		   (struct want_sub[]){{f, A(41), A(42)}}, 1, 1);
	src->ops->uffd_unregister(src, getpid(), 2, A(40), A(48));
	n0 = nrecs;
	r = (struct range){43, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [43,44) returned");
	tap_is_int(nrecs, n0, "unregistered (lenient) past the foreign pages: no event");
	tap_ok(mmap(base + 43 * P, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		    0) == base + 43 * P,
	       "page 43 mapped again");
	tap_is_int(src->ops->uffd_register(src, getpid(), 2, A(40), A(48), false), 0,
		   "uffd_register (lenient, VMA by VMA from the maps) over holes and foreign memory");
	n0 = nrecs;
	r = (struct range){43, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [43,44) returned");
	check_pair(n0, "lenient registration by the maps", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(43), A(44),
		   (struct want_sub[]){{f, A(43), A(44)}}, 1, 1);
	return f;
}

/* The second connection goes: mmnd closes its uffd, the only descriptor of it. */
static void test_second_detach(char *r2, uint32_t g, uint32_t f)
{
	struct range r;
	size_t n0;

	src->ops->detach_uffd(src, getpid(), 2);
	n0 = nrecs;
	r = (struct range){42, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap after that connection detached returned");
	tap_is_int(nrecs, n0, "its uffd was closed (the range is unregistered): no event");
	n0 = nrecs;
	r = (struct range){3, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap [3,4) in the first uffd's range returned");
	check_pair(n0, "first uffd still read", MMN__V1__EVENT_TYPE__EVENT_UNMAP, A(3), A(4),
		   (struct want_sub[]){{ka, A(3), A(4)}}, 1, 1);
	tap_is_int(src->ops->ksub_del(src, g), 0, "ksub_del of the second range");
	tap_is_int(src->ops->ksub_del(src, f), 0, "ksub_del of the lenient range");
	munmap(r2 + 2 * P, 2 * P); /* unregistered now: no wait */
	munmap(base + 40 * P, 4 * P);
	r = (struct range){44, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap of the first uffd's page 44 returned");
}

/* The other ops; then detach with ksubs left: each gets REVOKED{source gone}. */
static void test_detach(void)
{
	struct range r;
	uint32_t id;
	size_t n0;

	tap_is_int(src->ops->ksub_set_blocking(src, ka, false), 0, "ksub_set_blocking");
	tap_is_int(src->ops->ksub_set_blocking(src, 999999, false), -ENOENT,
		   "ksub_set_blocking unknown -> -ENOENT");
	tap_is_int(src->ops->ksub_resynced(src, ka), 0, "ksub_resynced");
	tap_is_int(src->ops->ack(src, recs[0].ev.event_id), -ENOENT, "ack -> -ENOENT: nobody waits");

	/* REVOKED comes from the next loop iteration. */
	close(ctl);
	n0 = nrecs;
	src->ops->detach_uffd(src, getpid(), 0);
	tap_is_int(nrecs, n0, "detach_uffd emits nothing from inside the call");
	uv_run(&loop, UV_RUN_NOWAIT);
	tap_is_int(nrecs - n0, 3, "detach_uffd: one REVOKED per remaining ksub");
	for (size_t i = n0; i < nrecs; i++)
		tap_ok(recs[i].ev.kind == SOURCE_REVOKED && recs[i].ev.reason == 4 && recs[i].ev.nsubs == 1 &&
			       (recs[i].subs[0].ksub_id == ka || recs[i].subs[0].ksub_id == kb ||
				recs[i].subs[0].ksub_id == ke),
		       "REVOKED{source gone} for ksub %u", recs[i].subs[0].ksub_id);
	n0 = nrecs;
	r = (struct range){2, 1, 0};
	tap_ok(run_op(do_munmap, &r), "munmap after detach returns (the kernel unregistered the range)");
	tap_is_int(nrecs, n0, "no event after detach");
	tap_is_int(src->ops->ksub_add(src, &self, A(0), (uint64_t)P, true, 0, &id), -EOPNOTSUPP,
		   "ksub_add after detach -> -EOPNOTSUPP");
	tap_ok(src->ops->ksub_del(src, ka) == 0 && src->ops->ksub_del(src, kb) == 0 &&
		       src->ops->ksub_del(src, ke) == 0,
	       "revoked ksubs are deleted once");
}

int main(void)
{
	struct source_target two;
	uint64_t features = 0;
	uint32_t g, f;
	int fd, fds0;

	P = sysconf(_SC_PAGESIZE);
	self = (struct source_target){.pid = getpid(), .uffd = -1};
	fd = uffd_client_open(&features);
	if (fd < 0)
		tap_skip_all("userfaultfd(UFFD_USER_MODE_ONLY) is not available here");
	fork_ok = features & UFFD_FEATURE_EVENT_FORK;
	if (!fork_ok)
		tap_diag("no CAP_SYS_PTRACE: UFFD_FEATURE_EVENT_FORK refused, fork is not reported");

	tap_require(uv_loop_init(&loop) == 0);
	self.pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	fds0 = procstat_fds(getpid()) - 2; /* the source closes fd; pidfd is closed before counting again */
	tap_require(mmn__source_uffd_new(&loop, emit, NULL, &src) == 0);
	tap_require(src->ops->start(src) == 0);

	test_caps_and_refusals();
	test_attach(fd);
	test_events();
	test_no_ksub();
	test_fork();
	test_fault_and_del();
	two = self;
	two.conn = 2;
	g = test_second_uffd(&two, base + 44 * P); /* mapped, not registered yet */
	f = test_lenient(&two, base + 44 * P);
	test_second_detach(base + 44 * P, g, f);
	test_detach();
	test_other_process();

	src->ops->destroy(src);
	uv_run(&loop, UV_RUN_DEFAULT);
	close(self.pidfd);
	tap_is_int(procstat_fds(getpid()), fds0, "no fd left open (loop and pidfd aside)");
	tap_is_int(uv_loop_close(&loop), 0, "every handle closed after destroy");
	munmap(base, 48 * P);
	return tap_done();
}
