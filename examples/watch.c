/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * watch: the README demo client.  Subscribes to a buffer of its own, then
 * munmaps part of it, madvise(MADV_DONTNEED)s another part and mremaps a
 * third part away, and prints every invalidation mmnd delivers and its end.
 * Exits 0 when each change produced an invalidation of exactly the changed
 * range followed by its end, 1 otherwise.
 *
 *   watch [--blocking|--nonblocking] [--socket PATH] [--timeout-ms N]
 *
 * Callbacks run on the library's fault-free thread (mmn_start_thread): they
 * only copy the event into a preallocated array and wake the main thread,
 * which prints (printing could fault or allocate: see mmn.h's rule).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#define NPAGES	   64
#define MAX_EVENTS 256

struct event {
	bool end;
	struct mmn_range r;
};

static struct event events[MAX_EVENTS];
static unsigned nevents; /* written by the library thread, read after the eventfd */
static int efd;

static const char *event_name(enum mmn_event e)
{
	static const char *const names[] = {
		"UNMAP",   "CLEAR",	"PROTECTION_VMA", "PROTECTION_PAGE", "SOFT_DIRTY", "RELEASE",
		"MIGRATE", "EXCLUSIVE", "REMOVE",	  "REMAP",	     "RESYNC",
	};
	return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] : "?";
}

static void record(bool end, const struct mmn_range *r)
{
	unsigned n = __atomic_load_n(&nevents, __ATOMIC_RELAXED);
	uint64_t one = 1;

	if (n < MAX_EVENTS) {
		events[n].end = end;
		events[n].r = *r;
		__atomic_store_n(&nevents, n + 1, __ATOMIC_RELEASE);
	}
	if (write(efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the main thread wakes anyway */
	}
}

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	record(false, r);
	return 0; /* done: the library acks when needed */
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	record(true, r);
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct mmn_range r = {0};

	record(true, &r);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned printed;

static void print_new(const char *base)
{
	unsigned n = __atomic_load_n(&nevents, __ATOMIC_ACQUIRE);

	for (; printed < n; printed++) {
		const struct event *e = &events[printed];
		uintptr_t b = (uintptr_t)base;

		if (e->end)
			printf("  invalidate_end  event_id=%" PRIu64 " [+0x%" PRIx64 ", +0x%" PRIx64
			       ") seq=%" PRIu64 "\n",
			       e->r.event_id, e->r.start - b, e->r.end - b, e->r.seq);
		else
			printf("  invalidate      %-8s [+0x%" PRIx64 ", +0x%" PRIx64 ") (%" PRIu64
			       " pages) blockable=%d needs_ack=%d event_id=%" PRIu64 "\n",
			       event_name(e->r.event), e->r.start - b, e->r.end - b,
			       (e->r.end - e->r.start) / (uint64_t)sysconf(_SC_PAGESIZE), e->r.blockable,
			       e->r.needs_ack, e->r.event_id);
	}
	fflush(stdout);
}

/* Wait for an invalidation of exactly [a, b) with an accepted event, and its end. */
static bool expect(const char *base, uint64_t a, uint64_t b, uint64_t events_ok, unsigned from,
		   int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint64_t id = 0;
	bool seen = false;

	for (;;) {
		unsigned n = __atomic_load_n(&nevents, __ATOMIC_ACQUIRE);
		struct pollfd p = {.fd = efd, .events = POLLIN};
		int64_t left;
		uint64_t cnt;

		for (unsigned i = from; i < n; i++) {
			const struct event *e = &events[i];

			if (!e->end && !seen && e->r.start == a && e->r.end == b &&
			    (events_ok >> e->r.event & 1)) {
				seen = true;
				id = e->r.event_id;
			} else if (e->end && seen && e->r.event_id == id) {
				print_new(base);
				return true;
			}
		}
		left = deadline - now_ms();
		if (left <= 0)
			break;
		poll(&p, 1, (int)left);
		if (read(efd, &cnt, sizeof(cnt)) < 0) {
			/* EAGAIN: spurious */
		}
	}
	print_new(base);
	return false;
}

/* --blocking, --socket, --timeout-ms; -1 after --help (exit 0) or a bad option (exit 1). */
static int parse_args(int argc, char **argv, uint32_t *flags, const char **socket_path, int *timeout_ms)
{
	static const struct option longopts[] = {
		{"blocking", no_argument, NULL, 'b'},	  {"nonblocking", no_argument, NULL, 'n'},
		{"socket", required_argument, NULL, 's'}, {"timeout-ms", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},	  {0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "bns:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			*flags = MMN_SUB_BLOCKING;
			break;
		case 'n':
			*flags = MMN_SUB_NONBLOCKING;
			break;
		case 's':
			*socket_path = optarg;
			break;
		case 't':
			*timeout_ms = atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: %s [--blocking|--nonblocking] [--socket PATH] [--timeout-ms N]\n",
				argv[0]);
			return opt == 'h' ? 0 : 1;
		}
	}
	return -1;
}

/* Three changes to @buf, each checked against the events it must cause; how many went missing. */
static int three_changes(char *buf, char *dst, size_t ps, int timeout_ms)
{
	uint64_t ok_remove, ok_remap;
	int failed = 0;
	unsigned from;

	from = __atomic_load_n(&nevents, __ATOMIC_ACQUIRE);
	printf("munmap(buf + 8 pages, 4 pages)\n");
	fflush(stdout);
	munmap(buf + 8 * ps, 4 * ps);
	if (!expect(buf, (uintptr_t)buf + 8 * ps, (uintptr_t)buf + 12 * ps, 1ull << MMN_EVENT_UNMAP, from,
		    timeout_ms)) {
		printf("  MISSING: UNMAP of exactly [+0x%zx, +0x%zx)\n", 8 * ps, 12 * ps);
		failed++;
	}

	from = __atomic_load_n(&nevents, __ATOMIC_ACQUIRE);
	ok_remove = 1ull << MMN_EVENT_REMOVE | 1ull << MMN_EVENT_CLEAR | 1ull << MMN_EVENT_UNMAP;
	printf("madvise(buf + 16 pages, 4 pages, MADV_DONTNEED)\n");
	fflush(stdout);
	madvise(buf + 16 * ps, 4 * ps, MADV_DONTNEED);
	if (!expect(buf, (uintptr_t)buf + 16 * ps, (uintptr_t)buf + 20 * ps, ok_remove, from, timeout_ms)) {
		printf("  MISSING: REMOVE/CLEAR of exactly [+0x%zx, +0x%zx)\n", 16 * ps, 20 * ps);
		failed++;
	}

	from = __atomic_load_n(&nevents, __ATOMIC_ACQUIRE);
	ok_remap = 1ull << MMN_EVENT_REMAP | 1ull << MMN_EVENT_UNMAP;
	printf("mremap(buf + 32 pages, 8 pages -> elsewhere)\n");
	fflush(stdout);
	if (mremap(buf + 32 * ps, 8 * ps, 8 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == MAP_FAILED) {
		perror("mremap");
		failed++;
	} else if (!expect(buf, (uintptr_t)buf + 32 * ps, (uintptr_t)buf + 40 * ps, ok_remap, from,
			   timeout_ms)) {
		printf("  MISSING: REMAP/UNMAP of exactly [+0x%zx, +0x%zx)\n", 32 * ps, 40 * ps);
		failed++;
	}
	return failed;
}

int main(int argc, char **argv)
{
	uint32_t flags = MMN_SUB_NONBLOCKING;
	const char *socket_path = NULL;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	int timeout_ms = 5000, r, failed;
	struct mmn_client *c;
	struct mmn_sub *s;
	struct mmn_sub_opts o = {.size = sizeof(o)};
	uint64_t caps;
	char *buf, *dst;

	r = parse_args(argc, argv, &flags, &socket_path, &timeout_ms);
	if (r >= 0)
		return r;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = mmn_connect(socket_path, &c);
	if (r < 0) {
		fprintf(stderr, "Failed to connect to mmnd: %s\n", mmn_strerror(r));
		return 1;
	}
	caps = mmn_capabilities(c);
	printf("connected: events 0x%" PRIx64 ", acks %s the kernel, invalidations arrive %s the change%s\n",
	       (uint64_t)(caps & ((1ull << (MMN_EVENT_RESYNC + 1)) - 1)),
	       caps & MMN_CAP_ACKS_HOLD_KERNEL ? "hold" : "do not hold",
	       caps & MMN_CAP_EVENTS_BEFORE_CHANGE ? "before" : "after",
	       caps & MMN_CAP_SELF_ONLY ? ", own memory only (userfaultfd source)" : "");
	r = mmn_start_thread(c);
	if (r < 0) {
		fprintf(stderr, "Failed to start the dispatch thread: %s\n", mmn_strerror(r));
		return 1;
	}

	buf = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, 8 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* where mremap moves to */
	if (buf == MAP_FAILED || dst == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(buf, 0x5a, NPAGES * ps);
	o.flags = flags;
	o.invalidate = on_invalidate;
	o.invalidate_end = on_end;
	o.release = on_release;
	r = mmn_subscribe(c, 0, (uintptr_t)buf, NPAGES * ps, &o, &s);
	if (r < 0) {
		fprintf(stderr, "Failed to subscribe: %s\n", mmn_strerror(r));
		return 1;
	}
	printf("subscribed %s to [%p, +0x%zx) (%d pages) of pid %d\n",
	       flags == MMN_SUB_BLOCKING ? "blocking" : "non-blocking", (void *)buf, NPAGES * ps, NPAGES,
	       (int)getpid());
	fflush(stdout);

	failed = three_changes(buf, dst, ps, timeout_ms);

	r = mmn_unsubscribe(s);
	if (r < 0)
		fprintf(stderr, "Failed to unsubscribe: %s\n", mmn_strerror(r));
	mmn_disconnect(c);
	printf("%s: %d of 3 changes reported as expected\n", failed ? "FAIL" : "OK", 3 - failed);
	return failed ? 1 : 0;
}
