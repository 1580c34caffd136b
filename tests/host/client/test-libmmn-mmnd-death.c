/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A client must not hang when mmnd (userfaultfd source) dies.  munmap,
 * madvise and fork raise userfaultfd events, and the calling thread sleeps
 * until mmnd has read the event or the uffd is released.  A client that kept
 * its own descriptor of the uffd kept it alive after mmnd's death, and a
 * single-threaded client (mmn_dispatch) never got to reconnect.  Here, with
 * one mmn_dispatch client and one on the library thread, each subscribed:
 * mmnd is SIGKILLed; madvise(MADV_DONTNEED), munmap and fork() must return
 * (each runs on a helper thread, bounded: a hang is reported, then the
 * process exits); mmnd restarts, both clients reconnect, RESYNC arrives and
 * new invalidations are delivered again.
 *   test-libmmn-mmnd-death MMND
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/dispatch.h"
#include "lib/mmnd-run.h"
#include "mmn/mmn.h"
#include "lib/uffd-count.h"
#include "tap.h"

#define OP_TIMEOUT_MS 5000

struct rec {
	unsigned ninval, nend, nresync, nrelease;
	uint64_t last_start, last_end; /* the last UNMAP/REMOVE */
	int efd;		       /* kicked on every callback (library thread) */
};

static void kick(int efd)
{
	uint64_t one = 1;

	if (efd >= 0 && write(efd, &one, sizeof(one)) < 0)
		abort();
}

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	if (r->event == MMN_EVENT_RESYNC) {
		__atomic_add_fetch(&rec->nresync, 1, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&rec->last_start, r->start, __ATOMIC_RELAXED);
		__atomic_store_n(&rec->last_end, r->end, __ATOMIC_RELAXED);
	}
	__atomic_add_fetch(&rec->ninval, 1, __ATOMIC_RELEASE);
	kick(rec->efd);
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	__atomic_add_fetch(&rec->nend, 1, __ATOMIC_RELEASE);
	kick(rec->efd);
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct rec *rec = ud;

	__atomic_add_fetch(&rec->nrelease, 1, __ATOMIC_RELEASE);
	kick(rec->efd);
}

/* Wait (poll on @rec->efd, 5 s at most) until *@counter >= @n: library thread client. */
static bool thread_until(struct rec *rec, const unsigned *counter, unsigned n)
{
	for (int i = 0; i < 100 && __atomic_load_n(counter, __ATOMIC_ACQUIRE) < n; i++) {
		struct pollfd p = {.fd = rec->efd, .events = POLLIN};
		uint64_t v;

		poll(&p, 1, 50);
		if (read(rec->efd, &v, sizeof(v)) < 0) {
			/* nothing yet */
		}
	}
	return __atomic_load_n(counter, __ATOMIC_ACQUIRE) >= n;
}

/* One memory operation on a helper thread, so that a hang is reported instead of stalling CI. */
struct op {
	int kind; /* 0 madvise(DONTNEED), 1 munmap, 2 fork */
	void *addr;
	size_t len;
	int result;
	int efd;
};

static void *op_main(void *arg)
{
	struct op *o = arg;

	if (o->kind == 0) {
		o->result = madvise(o->addr, o->len, MADV_DONTNEED) == 0 ? 0 : -errno;
	} else if (o->kind == 1) {
		o->result = munmap(o->addr, o->len) == 0 ? 0 : -errno;
	} else {
		pid_t k = fork();
		int status = -1;

		if (k == 0)
			_exit(0);
		o->result = k > 0 && waitpid(k, &status, 0) == k && WIFEXITED(status) ? 0 : -ECHILD;
	}
	kick(o->efd);
	return NULL;
}

/*
 * Run @o; true when it returned within OP_TIMEOUT_MS.  A thread stuck in the
 * kernel cannot be stopped: the test then ends here (exit_group kills it).
 */
static bool run_op(struct op *o, const char *what)
{
	struct pollfd p;
	pthread_t t;

	o->efd = eventfd(0, EFD_CLOEXEC);
	o->result = 1;
	if (o->efd < 0 || pthread_create(&t, NULL, op_main, o) != 0) {
		tap_ok(false, "%s: cannot start a thread", what);
		return false;
	}
	p = (struct pollfd){.fd = o->efd, .events = POLLIN};
	if (poll(&p, 1, OP_TIMEOUT_MS) != 1) {
		tap_ok(false, "%s returned after mmnd died (hung in the kernel)", what);
		tap_done();
		_exit(1);
	}
	pthread_join(t, NULL);
	close(o->efd);
	tap_ok(o->result == 0, "%s returned after mmnd died (%d)", what, o->result);
	return true;
}

static char dir[] = "/tmp/mmn-death-XXXXXX";
static char sock[128];
static long ps;

/* The two clients: c1 single-threaded (mmn_dispatch), c2 on the library thread. */
struct clients {
	struct rec r1, r2;
	struct mmn_client *c1, *c2;
	struct mmn_sub *s1, *s2;
	char *b1, *b2; /* 32 pages each, subscribed whole */
};

static void subscribe_both(struct clients *k)
{
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .flags = MMN_SUB_BLOCKING,
				 .invalidate = on_inval,
				 .invalidate_end = on_end,
				 .release = on_release};
	struct mmn_sub *tmp;

	k->b1 = mmap(NULL, 32 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	k->b2 = mmap(NULL, 32 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(k->b1 != MAP_FAILED && k->b2 != MAP_FAILED);
	memset(k->b1, 1, 32 * ps);
	memset(k->b2, 1, 32 * ps);
	tap_require(mmn_connect(sock, &k->c1) == 0);
	tap_require(mmn_connect(sock, &k->c2) == 0);
	tap_is_int(mmn_start_thread(k->c2), 0, "second client: library thread");
	tap_is_int(count_uffds(), 0, "the library keeps no descriptor of its userfaultfds (mmnd holds them)");
	o.userdata = &k->r1;
	tap_is_int(mmn_subscribe(k->c1, 0, (uintptr_t)k->b1, 32 * ps, &o, &k->s1), 0,
		   "mmn_dispatch client subscribed");
	o.userdata = &k->r2;
	tap_is_int(mmn_subscribe(k->c2, 0, (uintptr_t)k->b2, 32 * ps, &o, &k->s2), 0,
		   "library thread client subscribed");
	tap_is_int(mmn_subscribe(k->c2, 0, (uintptr_t)k->b1 + ps, ps, &o, &tmp), -EBUSY,
		   "another client's range -> -EBUSY (one userfaultfd per range)");
	munmap(k->b1, ps);
	tap_ok(dispatch_reached(k->c1, &k->r1.nend, 1) && k->r1.last_start == (uintptr_t)k->b1 &&
		       k->r1.last_end == (uintptr_t)k->b1 + ps,
	       "UNMAP delivered before mmnd dies");
}

/* mmnd is dead and nobody dispatches c1: only the release of the uffd lets these return. */
static void ops_after_death(struct clients *k)
{
	run_op(&(struct op){.kind = 0, .addr = k->b1 + 2 * ps, .len = 2 * ps},
	       "madvise(DONTNEED), mmn_dispatch client");
	run_op(&(struct op){.kind = 1, .addr = k->b1 + 4 * ps, .len = 2 * ps}, "munmap, mmn_dispatch client");
	run_op(&(struct op){.kind = 0, .addr = k->b2 + 2 * ps, .len = 2 * ps},
	       "madvise(DONTNEED), library thread client");
	run_op(&(struct op){.kind = 1, .addr = k->b2 + 4 * ps, .len = 2 * ps},
	       "munmap, library thread client");
	run_op(&(struct op){.kind = 2}, "fork()");
}

/*
 * Memory that cannot be registered (a read-only shared mapping: no
 * VM_MAYWRITE) takes the place of page 4 of c1's range meanwhile: the
 * re-subscription after the restart skips it rather than fail.
 */
static void foreign_in_hole(struct clients *k)
{
	char path[64];
	int mfd = memfd_create("ro", MFD_CLOEXEC), ro;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	tap_require(mfd >= 0 && ro >= 0 && ftruncate(mfd, ps) == 0);
	tap_ok(mmap(k->b1 + 4 * ps, ps, PROT_READ, MAP_SHARED | MAP_FIXED, ro, 0) == k->b1 + 4 * ps,
	       "a read-only shared mapping in the hole of c1's range");
	close(ro);
	close(mfd);
}

/* mmnd is back: both clients reconnected; RESYNC, then new events. */
static void after_restart(struct clients *k, unsigned ends)
{
	unsigned n;

	tap_ok(dispatch_reached(k->c1, &k->r1.nresync, 1), "mmn_dispatch client: RESYNC after the restart");
	tap_ok(dispatch_reached(k->c1, &k->r1.nend, ends + 1) && k->r1.nrelease == 0,
	       "RESYNC ended, the subscription lives");
	/* Its end too: the REMOVE's end below must not be confused with the RESYNC's. */
	tap_ok(thread_until(&k->r2, &k->r2.nresync, 1) &&
		       thread_until(&k->r2, &k->r2.nend, __atomic_load_n(&k->r2.ninval, __ATOMIC_ACQUIRE)),
	       "library thread client: RESYNC after the restart, and its end");
	tap_is_int(count_uffds(), 0, "still no userfaultfd descriptor in the client");
	n = k->r1.nend;
	munmap(k->b1 + 8 * ps, ps);
	tap_ok(dispatch_reached(k->c1, &k->r1.nend, n + 1) && k->r1.last_start == (uintptr_t)k->b1 + 8 * ps &&
		       k->r1.last_end == (uintptr_t)k->b1 + 9 * ps,
	       "mmn_dispatch client: UNMAP delivered by the new mmnd");
	n = __atomic_load_n(&k->r2.nend, __ATOMIC_ACQUIRE);
	madvise(k->b2 + 8 * ps, ps, MADV_DONTNEED);
	tap_ok(thread_until(&k->r2, &k->r2.nend, n + 1) && k->r2.last_start == (uintptr_t)k->b2 + 8 * ps &&
		       k->r2.last_end == (uintptr_t)k->b2 + 9 * ps,
	       "library thread client: REMOVE delivered by the new mmnd");
	tap_is_int(k->r1.nrelease + k->r2.nrelease, 0, "no subscription was released");
	tap_is_int(mmn_unsubscribe(k->s2), 0, "unsubscribe (library thread client)");
	tap_is_int(mmn_unsubscribe(k->s1), 0, "unsubscribe (mmn_dispatch client)");
	mmn_disconnect(k->c2);
	mmn_disconnect(k->c1);
	munmap(k->b1, 32 * ps);
	munmap(k->b2, 32 * ps);
}

int main(int argc, char **argv)
{
	struct clients k = {.r1 = {.efd = -1}, .r2 = {.efd = -1}};
	unsigned ends;
	pid_t pid;

	if (argc != 2) {
		printf("1..0 # SKIP usage: test-libmmn-mmnd-death MMND\n");
		return 0;
	}
	if (!mmnd_run_uffd_available()) {
		printf("1..0 # SKIP userfaultfd unavailable: the uffd source cannot run here\n");
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	ps = sysconf(_SC_PAGESIZE);
	k.r2.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	tap_require(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/mmnd.sock", dir);
	pid = mmnd_run_uffd(argv[1], sock);
	tap_require(pid > 0);
	subscribe_both(&k);

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ops_after_death(&k);
	foreign_in_hole(&k);

	/* mmnd comes back: both reconnect and re-subscribe (over the holes: lenient). */
	ends = k.r1.nend;
	unlink(sock);
	pid = mmnd_run_uffd(argv[1], sock);
	tap_require(pid > 0);
	after_restart(&k, ends);

	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
	rmdir(dir);
	close(k.r2.efd);
	return tap_done();
}
