/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mmnd with the userfaultfd source, end to end, with real kernel events:
 *
 *   test-source-uffd-mmnd MMND events   libmmn client of its own memory: exact
 *                                UNMAP / REMOVE / REMAP / PROTECTION_PAGE
 *                                after munmap / madvise / mremap / fork;
 *                                clients SIGKILLed mid-fan-out leave the
 *                                daemon and the other clients unaffected;
 *                                100 clients x 100 subscriptions churn with
 *                                mmnd's fd count and RSS back to baseline.
 *   test-source-uffd-mmnd MMND basic    the events and kills, no churn (for slow
 *                                emulated guests)
 *   test-source-uffd-mmnd MMND events|churn VALGRIND
 *                                the same (or the churn only) with mmnd under
 *                                valgrind: after SIGTERM it must exit 0 (no
 *                                leak, no error).
 *
 * mmnd is started with --ready-fd on a pipe; every wait is on a descriptor
 * (poll with a generous timeout that only detects failure), never a sleep.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "mmnd-run.h"
#include "procstat.h"
#include "tap.h"
#include "uffd-client.h"
#include "wire.h"

#define WAIT_MS	    20000 /* failure detection only */
#define NCHURN	    100	  /* clients */
#define NCHURN_SUBS 100	  /* subscriptions each */
#define NVICTIMS    4

static const char *mmnd_path, *valgrind_path;
static char dir[32], sock_path[96];
static pid_t mmnd_pid = -1;
static long P;

/* ---- mmnd ---- */

static pid_t start_mmnd(void)
{
	const char *const vg[] = {valgrind_path,
				  "--error-exitcode=99",
				  "--leak-check=full",
				  "--show-leak-kinds=definite,indirect",
				  "--errors-for-leak-kinds=definite,indirect",
				  "--quiet",
				  NULL};
	struct mmnd_run m = {.exe = mmnd_path, .wrapper = valgrind_path ? vg : NULL};

	tap_require(snprintf(m.sock, sizeof(m.sock), "%s", sock_path) < (int)sizeof(m.sock));
	if (!tap_ok(mmnd_run_start(&m, NULL, valgrind_path ? 6 * WAIT_MS : WAIT_MS) == 0,
		    "mmnd --source=uffd reported ready on --ready-fd"))
		exit(1);
	return m.pid;
}

static bool mmnd_alive(void)
{
	return waitpid(mmnd_pid, NULL, WNOHANG) == 0;
}

/* ---- raw protocol (victims and the probe do without libmmn) ---- */

static int raw_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Send @env (+ @sendfd) and return the next message; fds received are closed. */
static MmnEnvelope *raw_call(int fd, MmnEnvelope *env, int sendfd)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	struct pollfd p = {fd, POLLIN, 0};
	int fds[MMN_WIRE_MAX_FDS];
	size_t nfds = 0, i;
	MmnEnvelope *rep = NULL;
	ssize_t n;

	if (mmn__wire_send(fd, env, &sendfd, sendfd >= 0 ? 1 : 0, 0) < 0)
		return NULL;
	if (poll(&p, 1, WAIT_MS) != 1)
		return NULL;
	n = mmn__wire_recv(fd, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (n <= 0 || mmn__wire_decode(buf, (size_t)n, &rep) < 0)
		return NULL;
	return rep;
}

static bool raw_hello(int fd)
{
	Mmn__V1__Hello h = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep;
	bool ok;

	h.version_min = h.version_max = MMN_PROTO_VERSION;
	h.client_name = "uffd-test";
	env.request_id = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &h;
	rep = raw_call(fd, &env, -1);
	ok = rep && rep->body_case == MMN__V1__ENVELOPE__BODY_HELLO_REPLY && rep->hello_reply->needs_uffd;
	if (rep)
		mmn__wire_free(rep);
	return ok;
}

/* A round trip on an idle connection: mmnd has run loop iterations since. */
static bool raw_ping(int fd)
{
	Mmn__V1__Unsubscribe u = MMN__V1__UNSUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep;

	u.sub_id = UINT64_MAX;
	env.request_id = 7;
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE;
	env.unsubscribe = &u;
	rep = raw_call(fd, &env, -1);
	if (rep)
		mmn__wire_free(rep);
	return rep != NULL;
}

/*
 * A victim: its own uffd and a blocking subscription over 256 pages it then
 * unmaps one by one, never reading its socket, until it is killed.
 */
static void victim(int ready)
{
	Mmn__V1__AttachUffd au = MMN__V1__ATTACH_UFFD__INIT;
	Mmn__V1__Subscribe sub = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *rep;
	char *m = mmap(NULL, 256 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t features;
	int fd = raw_connect(), uffd = uffd_client_open(&features);

	if (m == MAP_FAILED || fd < 0 || uffd < 0 || !raw_hello(fd) ||
	    uffd_client_register(uffd, (uint64_t)(uintptr_t)m, 256 * (uint64_t)P) < 0)
		_exit(2);
	au.features = features;
	env.request_id = 2;
	env.body_case = MMN__V1__ENVELOPE__BODY_ATTACH_UFFD;
	env.attach_uffd = &au;
	rep = raw_call(fd, &env, uffd);
	if (!rep || rep->body_case != MMN__V1__ENVELOPE__BODY_STATUS || rep->status->error)
		_exit(3);
	mmn__wire_free(rep);
	sub.start = (uint64_t)(uintptr_t)m;
	sub.length = 256 * (uint64_t)P;
	sub.flags = MMN__V1__SUB_FLAG__SUB_BLOCKING;
	env.request_id = 3;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &sub;
	rep = raw_call(fd, &env, -1);
	if (!rep || rep->body_case != MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY)
		_exit(4);
	mmn__wire_free(rep);
	if (write(ready, "r", 1) != 1)
		_exit(5);
	for (int i = 0; i < 256; i++)
		munmap(m + i * P, P);
	pause();
	_exit(0);
}

/* ---- the libmmn client ---- */

struct rec {
	int sub;   /* 0: S, 1: S2 */
	char kind; /* 'I' invalidate, 'E' invalidate_end, 'R' release */
	uint64_t start, end, event_id;
	int event;
};

static struct rec recs[256];
static size_t nrecs;
static int tags[2] = {0, 1};

static void add_rec(int sub, char kind, const struct mmn_range *r)
{
	if (nrecs < 256)
		recs[nrecs++] = (struct rec){sub,
					     kind,
					     r ? r->start : 0,
					     r ? r->end : 0,
					     r ? r->event_id : 0,
					     r ? (int)r->event : -1};
}

static int on_inv(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	add_rec(*(int *)ud, 'I', r);
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	add_rec(*(int *)ud, 'E', r);
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	add_rec(*(int *)ud, 'R', NULL);
}

/* Dispatch until @n records exist. */
static bool wait_recs(struct mmn_client *c, size_t n)
{
	struct pollfd p = {mmn_get_fd(c), POLLIN, 0};

	while (nrecs < n) {
		if (poll(&p, 1, WAIT_MS) != 1)
			return false;
		if (mmn_dispatch(c) < 0)
			return false;
	}
	return true;
}

static char *base;

static uint64_t A(long page)
{
	return (uint64_t)(uintptr_t)base + (uint64_t)page * (uint64_t)P;
}

static void dump_recs(size_t from)
{
	for (size_t k = from; k < nrecs; k++)
		tap_diag("  rec %zu: sub %d %c event %d [0x%llx, 0x%llx) id %llu", k, recs[k].sub,
			 recs[k].kind, recs[k].event, (unsigned long long)recs[k].start,
			 (unsigned long long)recs[k].end, (unsigned long long)recs[k].event_id);
}

/* recs[i]: an invalidation of @sub; the next record of @sub is its end. */
static void check_pair(size_t i, const char *what, int sub, int event, uint64_t start, uint64_t end)
{
	size_t j = i + 1;

	while (j < nrecs && recs[j].sub != sub)
		j++;
	if (!tap_ok(j < nrecs && recs[i].sub == sub && recs[i].kind == 'I' && recs[j].kind == 'E' &&
			    recs[j].event_id == recs[i].event_id,
		    "%s: invalidate then invalidate_end", what)) {
		dump_recs(i);
		return;
	}
	tap_is_int(recs[i].event, event, what);
	if (!tap_ok(recs[i].start == start && recs[i].end == end, "%s: exactly [0x%llx, 0x%llx)", what,
		    (unsigned long long)start, (unsigned long long)end))
		tap_diag("  got [0x%llx, 0x%llx)", (unsigned long long)recs[i].start,
			 (unsigned long long)recs[i].end);
}

/* Records of @sub from @from on, in order: pairs of (I, E) only, returned through @idx. */
static size_t sub_recs(int sub, size_t from, size_t *idx, size_t max)
{
	size_t n = 0;

	for (size_t i = from; i < nrecs && n < max; i++)
		if (recs[i].sub == sub)
			idx[n++] = i;
	return n;
}

/* A fork: the uffd source reports it as PROTECTION_PAGE over the whole subscription. */
static void fork_step(struct mmn_client *c)
{
	size_t n0, idx[16], k;
	pid_t pid;

	n0 = nrecs;
	pid = fork();
	if (pid == 0)
		_exit(0);
	tap_require(pid > 0);
	waitpid(pid, NULL, 0);
	/* S and S2 overlap: one kernel subscription [2,50), clipped back to each. */
	tap_ok(wait_recs(c, n0 + 4), "fork: callbacks ran");
	k = sub_recs(0, n0, idx, 16);
	tap_ok(k >= 2, "fork: S got a pair");
	if (k >= 2)
		check_pair(idx[0], "fork -> PROTECTION_PAGE over all of S", 0,
			   MMN_EVENT_PROTECTION_PAGE, A(2), A(40));
}

/* The barrier, then exactly what each subscription saw over the whole test. */
static void barrier_step(struct mmn_client *c, bool fork_reported)
{
	size_t n0, idx[16], k;

	/* A barrier both see: anything spurious for either would have arrived before it. */
	n0 = nrecs;
	tap_is_int(munmap(base + 35 * P, P), 0, "munmap page 35 (in S and S2)");
	tap_ok(wait_recs(c, n0 + 4), "barrier: callbacks ran");
	k = sub_recs(1, 0, idx, 16);
	if (fork_reported) {
		tap_ok(k == 4 && recs[idx[0]].kind == 'I' &&
			       recs[idx[0]].event == MMN_EVENT_PROTECTION_PAGE &&
			       recs[idx[0]].start == A(30) && recs[idx[0]].end == A(50) &&
			       recs[idx[1]].kind == 'E',
		       "S2 saw exactly: fork PROTECTION_PAGE [30,50) ...");
		if (k == 4)
			check_pair(idx[2], "... and the barrier UNMAP [35,36)", 1, MMN_EVENT_UNMAP, A(35),
				   A(36));
	} else {
		tap_is_int(k, 2, "S2 saw exactly the barrier");
		if (k == 2)
			check_pair(idx[0], "S2: barrier UNMAP [35,36)", 1, MMN_EVENT_UNMAP, A(35), A(36));
	}
	k = sub_recs(0, 0, idx, 16);
	{
		/* S: munmap, madvise, mremap (+ its unmap of the old range), marker, [fork], barrier. */
		size_t want = 2 * (4 + (fork_reported ? 1 : 0) + 1);

		tap_is_int(k, want + 2, "S saw exactly its events");
		check_pair(idx[k - 2], "S: barrier UNMAP [35,36)", 0, MMN_EVENT_UNMAP, A(35), A(36));
	}
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].kind == 'R')
			tap_ok(0, "no release expected (sub %d)", recs[i].sub);
}

/*
 * S2 leaves: mmnd unregisters only what S does not cover.  Page 45 (S2's
 * alone) is no longer watched, page 37 (also S's) still is; uffd events
 * come in order, so 45's would precede the marker 37's.
 */
static void unsubscribe_step(struct mmn_client *c, struct mmn_sub *s2, struct mmn_sub_opts *o)
{
	size_t n0;

	tap_is_int(mmn_unsubscribe(s2), 0, "unsubscribe S2");
	n0 = nrecs;
	tap_is_int(munmap(base + 45 * P, P), 0, "munmap page 45 (S2's alone)");
	tap_is_int(munmap(base + 37 * P, P), 0, "munmap page 37 (S's too: the marker)");
	tap_ok(wait_recs(c, n0 + 2), "unsubscribe: callbacks ran");
	check_pair(n0, "unsubscribe: nothing for page 45, S still has page 37", 0, MMN_EVENT_UNMAP, A(37), A(38));
	/* As it was for the steps that follow: the pages back, S2 again. */
	for (int pg = 35; pg <= 45; pg += pg == 35 ? 2 : 8)
		tap_ok(mmap(base + pg * P, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			    0) == base + pg * P,
		       "page %d mapped again", pg);
	tap_is_int(mmn_subscribe(c, 0, A(30), 20 * P, o, &s2), 0, "subscribe S2 again");
}

static void test_events(struct mmn_client *c, bool fork_reported)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o), .invalidate = on_inv, .invalidate_end = on_end, .release = on_release};
	struct mmn_sub *s, *s2;
	uint64_t caps = mmn_capabilities(c);
	size_t n0;
	void *dest;

	tap_is_u64(caps & ((1ull << MMN_EVENT_RESYNC) - 1),
		   1ull << MMN_EVENT_UNMAP | 1ull << MMN_EVENT_PROTECTION_PAGE | 1ull << MMN_EVENT_REMOVE |
			   1ull << MMN_EVENT_REMAP,
		   "capabilities: UNMAP, PROTECTION_PAGE, REMOVE, REMAP");
	tap_ok(!(caps & MMN_CAP_ACKS_HOLD_KERNEL) && !(caps & MMN_CAP_EVENTS_BEFORE_CHANGE),
	       "capabilities: acks do not hold the kernel, events come after the change");

	/* 80 pages; page 70 is the mremap destination, where no other mmap() can land. */
	base = mmap(NULL, 80 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(base != MAP_FAILED);
	memset(base, 1, 80 * P);
	o.flags = MMN_SUB_NONBLOCKING;
	o.userdata = &tags[0];
	tap_is_int(mmn_subscribe(c, 0, A(2), 38 * P, &o, &s), 0, "subscribe S = pages [2,40), non-blocking");
	o.flags = MMN_SUB_BLOCKING;
	o.userdata = &tags[1];
	tap_is_int(mmn_subscribe(c, 0, A(30), 20 * P, &o, &s2), 0, "subscribe S2 = pages [30,50), blocking");

	/* The test thread itself unmaps: mmnd, another process, reads the event. */
	n0 = nrecs;
	tap_is_int(munmap(base, 4 * P), 0, "munmap pages [0,4)");
	tap_ok(wait_recs(c, n0 + 2), "munmap: callbacks ran");
	check_pair(n0, "munmap -> UNMAP of exactly the unmapped part of S", 0, MMN_EVENT_UNMAP, A(2), A(4));

	n0 = nrecs;
	tap_is_int(madvise(base + 10 * P, 2 * P, MADV_DONTNEED), 0, "madvise(DONTNEED) pages [10,12)");
	tap_ok(wait_recs(c, n0 + 2), "madvise: callbacks ran");
	check_pair(n0, "madvise(DONTNEED) -> REMOVE", 0, MMN_EVENT_REMOVE, A(10), A(12));

	dest = base + 70 * P;
	n0 = nrecs;
	tap_ok(mremap(base + 12 * P, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, dest) == dest,
	       "mremap page 12 away");
	/* Linux follows REMAP with an UNMAP of the old range (move_vma); a marker ends the step. */
	tap_is_int(munmap(base + 14 * P, P), 0, "munmap page 14 (marker)");
	tap_ok(wait_recs(c, n0 + 6), "mremap: callbacks ran");
	check_pair(n0, "mremap -> REMAP of the old range", 0, MMN_EVENT_REMAP, A(12), A(13));
	check_pair(n0 + 2, "mremap -> then UNMAP of the old range", 0, MMN_EVENT_UNMAP, A(12), A(13));
	check_pair(n0 + 4, "marker", 0, MMN_EVENT_UNMAP, A(14), A(15));

	if (fork_reported)
		fork_step(c);

	barrier_step(c, fork_reported);
	unsubscribe_step(c, s2, &o);

	munmap(dest, P);
}

static void test_kill_mid_fanout(struct mmn_client *c, bool fork_reported)
{
	pid_t v[NVICTIMS];
	int ready[2], status, killed = 0, fd;
	size_t n0;

	tap_require(pipe2(ready, O_CLOEXEC) == 0);
	n0 = nrecs;
	for (int i = 0; i < NVICTIMS; i++) {
		v[i] = fork();
		if (v[i] == 0) {
			close(ready[0]);
			victim(ready[1]);
		}
		tap_require(v[i] > 0);
	}
	close(ready[1]);
	if (fork_reported) {
		/* Forking them is a fork of this client: one PROTECTION_PAGE pair per sub each. */
		size_t pp = 0;

		tap_ok(wait_recs(c, n0 + 4 * NVICTIMS), "the victims' forks were reported");
		for (size_t i = n0; i < nrecs; i++)
			pp += recs[i].event == MMN_EVENT_PROTECTION_PAGE;
		tap_is_int(pp, 4 * NVICTIMS, "one PROTECTION_PAGE pair per fork and subscription");
	}
	for (int i = 0; i < NVICTIMS; i++) {
		struct pollfd p = {ready[0], POLLIN, 0};
		char ch;

		tap_require(poll(&p, 1, WAIT_MS) == 1 && read(ready[0], &ch, 1) == 1);
	}
	close(ready[0]);
	/* They are unmapping now; mmnd is fanning their events out.  Kill them in the middle. */
	for (int i = 0; i < NVICTIMS; i++)
		kill(v[i], SIGKILL);
	for (int i = 0; i < NVICTIMS; i++)
		if (waitpid(v[i], &status, 0) == v[i] && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			killed++;
	tap_is_int(killed, NVICTIMS, "victims were SIGKILLed mid-fan-out");
	tap_ok(mmnd_alive(), "mmnd survived");

	n0 = nrecs;
	tap_is_int(munmap(base + 36 * P, P), 0, "munmap page 36 after the kills");
	tap_ok(wait_recs(c, n0 + 4), "the surviving client still gets its events");
	{
		size_t idx[4], k = sub_recs(0, n0, idx, 4);

		if (tap_is_int(k, 2, "S: one pair"))
			check_pair(idx[0], "S after the kills", 0, MMN_EVENT_UNMAP, A(36), A(37));
		else
			dump_recs(n0);
	}
	fd = raw_connect();
	tap_ok(fd >= 0 && raw_hello(fd), "a new client connects after the kills");
	if (fd >= 0)
		close(fd);
}

/* ---- churn: NCHURN processes x NCHURN_SUBS subscriptions, @rounds connect/disconnect each ---- */

static void churn_child(int rounds)
{
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .flags = MMN_SUB_NONBLOCKING,
				 .invalidate = on_inv,
				 .invalidate_end = on_end,
				 .userdata = &tags[0]};
	char *m = mmap(NULL, 2 * NCHURN_SUBS * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		_exit(2);
	for (int r = 0; r < rounds; r++) {
		struct mmn_client *c;
		struct mmn_sub *s;
		int err = mmn_connect(sock_path, &c);

		if (err < 0) {
			fprintf(stderr, "churn client %d: round %d: connect: %s\n", (int)getpid(), r,
				strerror(-err));
			_exit(3);
		}
		for (int j = 0; j < NCHURN_SUBS; j++) {
			err = mmn_subscribe(c, 0, (uint64_t)(uintptr_t)(m + 2 * j * P), (uint64_t)P, &o, &s);
			if (err < 0) {
				fprintf(stderr, "churn client %d: round %d: subscribe %d: %s\n",
					(int)getpid(), r, j, strerror(-err));
				_exit(4);
			}
		}
		/* Real events too, left unread: mmnd reads, fans out and frees them on disconnect. */
		for (int j = 0; j < 10; j++)
			madvise(m + 2 * j * P, P, MADV_DONTNEED);
		mmn_disconnect(c);
	}
	_exit(0);
}

static bool churn(int rounds)
{
	pid_t pids[NCHURN];
	int ok = 0, status;

	for (int i = 0; i < NCHURN; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			churn_child(rounds);
		if (pids[i] < 0)
			return false;
	}
	for (int i = 0; i < NCHURN; i++)
		if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok++;
	if (ok != NCHURN)
		tap_diag("%d of %d churn clients failed", NCHURN - ok, NCHURN);
	return ok == NCHURN;
}

/* mmnd's fd count, seen with @probe connected, once it caught up with every departure. */
static int settled_fds(int probe, int want)
{
	int n = -1;

	for (int i = 0; i < 200; i++) {
		if (!raw_ping(probe))
			return -1;
		n = procstat_fds(mmnd_pid);
		if (n == want)
			break;
	}
	return n;
}

static void test_churn(void)
{
	int probe = raw_connect(), fds0, fds1;
	long rss0, rss1;

	tap_require(probe >= 0 && raw_hello(probe));
	/* The allocator's high-water mark settles after a few rounds (measured: 3 to 5). */
	int warm = valgrind_path ? 1 : 3, more = valgrind_path ? 2 : 5;

	tap_ok(churn(warm), "warm-up: %d clients x %d subscriptions connect and disconnect %d times", NCHURN,
	       NCHURN_SUBS, warm);
	fds0 = settled_fds(probe, -1);
	rss0 = procstat_rss_kb(mmnd_pid);
	tap_ok(churn(more), "%d clients x %d subscriptions connect and disconnect %d more times", NCHURN,
	       NCHURN_SUBS, more);
	fds1 = settled_fds(probe, fds0);
	rss1 = procstat_rss_kb(mmnd_pid);
	tap_is_int(fds1, fds0, "mmnd's fd count is back to baseline");
	if (!valgrind_path && !getenv("MMN_TEST_SANITIZED")) /* ASan's quarantine holds freed memory */
		tap_ok(rss1 <= rss0 + 2048,
		       "mmnd's RSS is back to baseline (%ld kB, was %ld kB; 50,000 more subscriptions)", rss1,
		       rss0);
	tap_ok(mmnd_alive(), "mmnd alive after the churn");
	close(probe);
}

int main(int argc, char **argv)
{
	struct mmn_client *c = NULL;
	uint64_t features;
	bool fork_reported;
	int fd, status = -1;

	if (argc < 3)
		tap_skip_all("usage: test-source-uffd-mmnd MMND events|basic|churn [VALGRIND]");
	mmnd_path = argv[1];
	valgrind_path = argc > 3 && argv[3][0] ? argv[3] : NULL;
	P = sysconf(_SC_PAGESIZE);
	fd = uffd_client_open(&features);
	if (fd < 0)
		tap_skip_all("userfaultfd(UFFD_USER_MODE_ONLY) is not available here");
	close(fd);
	fork_reported = features & UFFD_FEATURE_EVENT_FORK;
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/mmn-uffd-XXXXXX");
	tap_require(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/mmnd.sock", dir);
	mmnd_pid = start_mmnd();

	if (strcmp(argv[2], "events") == 0 || strcmp(argv[2], "basic") == 0) {
		tap_is_int(mmn_connect(sock_path, &c), 0, "libmmn connects (creates and attaches its uffd)");
		if (c) {
			test_events(c, fork_reported);
			test_kill_mid_fanout(c, fork_reported);
			mmn_disconnect(c);
		}
	}
	if (strcmp(argv[2], "basic") != 0)
		test_churn();

	kill(mmnd_pid, SIGTERM);
	tap_require(waitpid(mmnd_pid, &status, 0) == mmnd_pid);
	if (!tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mmnd%s exits 0 after SIGTERM",
		    valgrind_path ? " under valgrind (no leak, no error)" : ""))
		tap_diag("  status 0x%x", status);
	unlink(sock_path);
	rmdir(dir);
	return tap_done();
}
