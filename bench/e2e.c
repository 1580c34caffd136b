/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/e2e: the event path of one munmap, end to end, against its floors.
 *
 *   e2e MMND --source=kmod|uffd [--rounds=N]      (MMN_BENCH_ROUNDS sets N too)
 *
 * Every figure is a munmap of 16 KiB of touched anonymous memory (or a
 * ping-pong), N rounds, median, p99 and max in µs, and max/median:
 *
 *   rtt      a SOCK_SEQPACKET ping-pong between two processes (the floor of
 *            any user-space round trip: two wake-ups, two context switches);
 *   none     munmap with no subscription;
 *   kmod source (in the guest, mmn.ko loaded):
 *     raw    the module's own round trip: a driver process (tests/guest/kmod's
 *            drv) holds a BLOCKING subscription and acks every INVALIDATE
 *            over the raw generic-netlink channel;
 *     mmn    a real mmnd --source=kmod and libmmn clients of this process,
 *            dispatching on the library's thread or on an mmn_dispatch()
 *            loop of our own: 1 blocking, 1 non-blocking, 8 blocking;
 *   uffd source (on the host):
 *     raw    a thread reading UFFD_EVENT_UNMAP from its own userfaultfd;
 *     mmn    mmnd --source=uffd and one libmmn client, blocking and not.
 *
 * Ratios: the added latency (median minus none's) over the RTT and over the
 * raw path's added latency (kmod), or over raw added + RTT (uffd).
 *
 * With the kmod source the range stays at one address (the subscription
 * outlives the munmap: mmu interval notifiers are not tied to a VMA); with
 * the uffd source the munmap ends the registration, so every round maps a
 * fresh range and subscribes it (not timed).
 *
 * Reading the guest's figures: under TCG a wake-up of a task on the other
 * (idle, halted) vCPU costs 70-110 us, one on the waker's own CPU about 25;
 * the RTT is two such cross-CPU hops, a blocking munmap through mmnd four
 * (munmapper -> mmnd -> client -> mmnd -> munmapper) plus the CPU work of
 * each.  Every vCPU is a host thread, so a loaded host shows up as
 * milliseconds anywhere (a wakee behind a running task waits for its
 * 4 ms tick, HZ=250): compare figures of one run, at a low host load.
 * For the CPU work alone, with no host noise, boot the guest with qemu's
 * -icount shift=0 (one guest instruction per ns) and one vCPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "e2e-driver.h"
#include "mmnd-run.h"
#include "samples.h"

#define LEN	    (16 * 1024UL)
#define MAX_CLIENTS 8


static void print_stats(const char *what, const struct samples *s)
{
	printf("%-40s median %8.1f p99 %8.1f max %8.1f us  max/median %5.1f\n", what, s->median, s->p99, s->max,
	       s->max / s->median);
	fflush(stdout);
}

/* ---- the floor: a SOCK_SEQPACKET ping-pong --------------------------------- */

static int rtt(int rounds, uint64_t *v, struct samples *out)
{
	char msg[128] = {0};
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(sv[0]);
		while (read(sv[1], msg, sizeof(msg)) > 0 && write(sv[1], msg, sizeof(msg)) > 0)
			;
		_exit(0);
	}
	close(sv[1]);
	for (int i = 0; i < rounds; i++) {
		uint64_t t0 = samples_now_ns();

		if (write(sv[0], msg, sizeof(msg)) != sizeof(msg) || read(sv[0], msg, sizeof(msg)) != sizeof(msg))
			return -EIO;
		v[i] = samples_now_ns() - t0;
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
	*out = samples_of_ns(v, (size_t)rounds);
	return 0;
}

/* ---- timed munmaps ----------------------------------------------------------- */

/*
 * What happens around each timed munmap: @before (may be NULL) runs on the
 * freshly mapped and touched range, @after (may be NULL) after the munmap.
 * @fixed: map at this address every round (MAP_FIXED_NOREPLACE), or NULL.
 */
struct round_ops {
	int (*before)(void *ctx, char *p);
	void (*after)(void *ctx);
	void *ctx;
	char *fixed;
};

static int time_munmaps(const struct round_ops *o, int rounds, uint64_t *v, struct samples *out)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | (o->fixed ? MAP_FIXED_NOREPLACE : 0);

	for (int i = 0; i < rounds; i++) {
		char *p = mmap(o->fixed, LEN, PROT_READ | PROT_WRITE, flags, -1, 0);
		uint64_t t0;
		int r;

		if (p == MAP_FAILED)
			return -errno;
		memset(p, 1, LEN);
		r = o->before ? o->before(o->ctx, p) : 0;
		if (r < 0)
			return r;
		t0 = samples_now_ns();
		munmap(p, LEN);
		v[i] = samples_now_ns() - t0;
		if (o->after)
			o->after(o->ctx);
	}
	*out = samples_of_ns(v, (size_t)rounds);
	return 0;
}

/*
 * The kmod source's fixed range: at 8 GiB, far below where mmap() places
 * what it is not told where to (top-down from below the stack), so that
 * nothing else (a thread stack, the seq page of a client) lands in the
 * hole while it is unmapped.  NULL when that address is taken.
 */
static char *free_address(void)
{
	char *want = (char *)(8UL << 30);
	char *p = mmap(want, LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p, LEN);
	return p == want ? p : NULL;
}

/* ---- libmmn clients ------------------------------------------------------------ */

enum dispatch { ON_THREAD, ON_LOOP };

/* n clients of one mmnd, each with one subscription; the loop thread if ON_LOOP. */
struct clients {
	int n;
	bool blocking;
	enum dispatch how;
	const char *sock;
	struct mmn_client *c[MAX_CLIENTS];
	struct mmn_sub *s[MAX_CLIENTS];
	pthread_t loop;
	int stopfd; /* eventfd that ends the loop thread */
	atomic_ulong events;
};

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct clients *cs = ud;

	(void)s;
	if (r->event != MMN_EVENT_RESYNC)
		atomic_fetch_add_explicit(&cs->events, 1, memory_order_relaxed);
	return 0;
}

/* Our own dispatch loop: poll every client's fd, mmn_dispatch() the readable ones. */
static void *loop_main(void *arg)
{
	struct clients *cs = arg;
	struct pollfd p[MAX_CLIENTS + 1];

	for (int i = 0; i < cs->n; i++)
		p[i] = (struct pollfd){.fd = mmn_get_fd(cs->c[i]), .events = POLLIN};
	p[cs->n] = (struct pollfd){.fd = cs->stopfd, .events = POLLIN};
	for (;;) {
		if (poll(p, (nfds_t)cs->n + 1, -1) < 0 && errno != EINTR)
			break;
		if (p[cs->n].revents)
			break;
		for (int i = 0; i < cs->n; i++)
			if (p[i].revents)
				mmn_dispatch(cs->c[i]);
	}
	return NULL;
}

static int clients_subscribe(struct clients *cs, char *p)
{
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .flags = cs->blocking ? MMN_SUB_BLOCKING : MMN_SUB_NONBLOCKING,
				 .invalidate = on_invalidate,
				 .userdata = cs};

	for (int i = 0; i < cs->n; i++) {
		int r = mmn_subscribe(cs->c[i], 0, (uintptr_t)p, LEN, &o, &cs->s[i]);

		if (r < 0)
			return r;
	}
	return 0;
}

static int clients_subscribe_cb(void *ctx, char *p)
{
	return clients_subscribe(ctx, p);
}

static void clients_unsubscribe(void *ctx)
{
	struct clients *cs = ctx;

	for (int i = 0; i < cs->n; i++) {
		if (cs->s[i])
			mmn_unsubscribe(cs->s[i]);
		cs->s[i] = NULL;
	}
}

/* Connect and start dispatching.  0 or -errno; clients_down() in any case. */
static int clients_up(struct clients *cs)
{
	int r = 0;

	cs->stopfd = eventfd(0, EFD_CLOEXEC);
	if (cs->stopfd < 0)
		return -errno;
	for (int i = 0; i < cs->n && !r; i++) {
		r = mmn_connect(cs->sock, &cs->c[i]);
		if (!r && cs->how == ON_THREAD)
			r = mmn_start_thread(cs->c[i]);
	}
	if (!r && cs->how == ON_LOOP)
		r = -pthread_create(&cs->loop, NULL, loop_main, cs);
	if (!r && cs->how == ON_LOOP)
		cs->how = ON_LOOP + 1; /* the loop runs: join it */
	return r;
}

static void clients_down(struct clients *cs)
{
	clients_unsubscribe(cs);
	if (cs->how > ON_LOOP) {
		(void)!write(cs->stopfd, &(uint64_t){1}, 8);
		pthread_join(cs->loop, NULL);
		cs->how = ON_LOOP;
	}
	for (int i = 0; i < cs->n; i++) {
		mmn_disconnect(cs->c[i]);
		cs->c[i] = NULL;
	}
	if (cs->stopfd >= 0)
		close(cs->stopfd);
}

/*
 * One mmn figure: @n clients, @blocking, dispatching @how.  kmod (@fixed
 * set): subscribed once at @fixed; uffd: subscribed every round.
 */
static int time_mmn(const char *sock, int n, bool blocking, enum dispatch how, char *fixed, int rounds,
		    uint64_t *v, struct samples *out)
{
	struct clients cs = {.n = n, .blocking = blocking, .how = how, .sock = sock};
	struct round_ops o = {.ctx = &cs, .fixed = fixed};
	int r = clients_up(&cs);

	if (!r && fixed) {
		char *p = mmap(fixed, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			       -1, 0);

		r = p == MAP_FAILED ? -errno : clients_subscribe(&cs, p);
		if (p != MAP_FAILED)
			munmap(p, LEN);
		atomic_store(&cs.events, 0);
	} else if (!r) {
		o.before = clients_subscribe_cb;
		o.after = clients_unsubscribe;
	}
	if (!r)
		r = time_munmaps(&o, rounds, v, out);
	/* kmod, blocking: every munmap was delivered to every client before it returned */
	if (!r && blocking && fixed && atomic_load(&cs.events) < (unsigned long)rounds * (unsigned long)n)
		r = -EPROTO;
	clients_down(&cs);
	return r;
}

/* ---- kmod: the module's raw round trip ------------------------------------------- */

static int time_kmod_raw(char *fixed, int rounds, uint64_t *v, struct samples *out)
{
	struct round_ops o = {.fixed = fixed};
	int ready[2], stop[2], status, r;
	char c;
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(stop, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		e2e_raw_driver(getppid(), (uintptr_t)fixed, LEN, ready[1], stop[0]);
	close(ready[1]);
	r = read(ready[0], &c, 1) == 1 ? time_munmaps(&o, rounds, v, out) : -ENODEV;
	(void)!write(stop[1], "s", 1);
	waitpid(pid, &status, 0);
	close(ready[0]);
	close(stop[0]);
	close(stop[1]);
	return r < 0 ? r : WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -EIO;
}

/* ---- uffd: a raw userfaultfd reader -------------------------------------------------- */

struct raw_uffd {
	int uffd, stopfd;
	pthread_t thread;
	atomic_ulong events;
};

static void *raw_uffd_main(void *arg)
{
	struct raw_uffd *ru = arg;
	struct pollfd p[2] = {{.fd = ru->uffd, .events = POLLIN}, {.fd = ru->stopfd, .events = POLLIN}};
	struct uffd_msg msg;

	while (poll(p, 2, -1) >= 0 && !p[1].revents)
		if (read(ru->uffd, &msg, sizeof(msg)) == sizeof(msg) &&
		    (msg.event == UFFD_EVENT_UNMAP || msg.event == UFFD_EVENT_REMOVE))
			atomic_fetch_add(&ru->events, 1);
	return NULL;
}

static int raw_uffd_register(void *ctx, char *p)
{
	struct raw_uffd *ru = ctx;
	struct uffdio_register reg = {.range = {(uintptr_t)p, LEN}, .mode = UFFDIO_REGISTER_MODE_MISSING};

	return ioctl(ru->uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

static int time_uffd_raw(int rounds, uint64_t *v, struct samples *out)
{
	struct raw_uffd ru = {.stopfd = eventfd(0, EFD_CLOEXEC)};
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE};
	struct round_ops o = {.before = raw_uffd_register, .ctx = &ru};
	int r = -errno;

	ru.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (ru.uffd < 0 || ru.stopfd < 0 || ioctl(ru.uffd, UFFDIO_API, &api) < 0)
		goto out;
	r = -pthread_create(&ru.thread, NULL, raw_uffd_main, &ru);
	if (r < 0)
		goto out;
	r = time_munmaps(&o, rounds, v, out);
	if (!r && atomic_load(&ru.events) < (unsigned long)rounds)
		r = -EPROTO;
	(void)!write(ru.stopfd, &(uint64_t){1}, 8);
	pthread_join(ru.thread, NULL);
out:
	if (ru.uffd >= 0)
		close(ru.uffd);
	if (ru.stopfd >= 0)
		close(ru.stopfd);
	return r;
}

/* ---- the runs ---------------------------------------------------------------------- */

struct bench {
	const char *mmnd;
	bool kmod;
	int rounds;
	uint64_t *v;
	struct samples rtt, none, raw;
	char *fixed;
	struct mmnd_run m;
};

static void print_mmn(const struct bench *b, const char *what, const struct samples *s)
{
	double added = s->median - b->none.median, raw_added = b->raw.median - b->none.median;

	print_stats(what, s);
	if (b->kmod)
		printf("    added %.1f us: x%.2f RTT, x%.2f raw module added (%.1f us)\n", added, added / b->rtt.median,
		       added / raw_added, raw_added);
	else
		printf("    added %.1f us: x%.2f RTT, x%.2f (raw uffd added %.1f + RTT)\n", added,
		       added / b->rtt.median, added / (raw_added + b->rtt.median), raw_added);
	fflush(stdout);
}

/* The mmn figures: the client configurations of the source. */
static int run_mmn(struct bench *b)
{
	static const struct {
		const char *what;
		int n;
		bool blocking, kmod_only;
		enum dispatch how;
	} cfg[] = {
		{"mmn 1 blocking, library thread", 1, true, false, ON_THREAD},
		{"mmn 1 blocking, mmn_dispatch loop", 1, true, false, ON_LOOP},
		{"mmn 1 non-blocking, library thread", 1, false, false, ON_THREAD},
		{"mmn 1 non-blocking, mmn_dispatch loop", 1, false, false, ON_LOOP},
		{"mmn 8 blocking, library threads", 8, true, true, ON_THREAD},
		{"mmn 8 blocking, one mmn_dispatch loop", 8, true, true, ON_LOOP},
	};
	struct samples s;

	for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
		int r;

		if (cfg[i].kmod_only && !b->kmod)
			continue;
		r = time_mmn(b->m.sock, cfg[i].n, cfg[i].blocking, cfg[i].how, b->fixed, b->rounds, b->v, &s);
		if (r < 0) {
			fprintf(stderr, "e2e: %s: %s\n", cfg[i].what, strerror(-r));
			return r;
		}
		print_mmn(b, cfg[i].what, &s);
	}
	return 0;
}

static int run(struct bench *b)
{
	const char *args[] = {b->kmod ? "--source=kmod" : "--source=uffd", "--log-level=warning", NULL};
	int r;

	r = rtt(b->rounds, b->v, &b->rtt);
	if (r < 0)
		return fprintf(stderr, "e2e: rtt: %s\n", strerror(-r)), r;
	print_stats("rtt: SOCK_SEQPACKET ping-pong", &b->rtt);
	r = time_munmaps(&(struct round_ops){.fixed = b->fixed}, b->rounds, b->v, &b->none);
	if (r < 0)
		return fprintf(stderr, "e2e: none: %s\n", strerror(-r)), r;
	print_stats("munmap 16 KiB, no subscription", &b->none);
	r = b->kmod ? time_kmod_raw(b->fixed, b->rounds, b->v, &b->raw) : time_uffd_raw(b->rounds, b->v, &b->raw);
	if (r < 0)
		return fprintf(stderr, "e2e: raw: %s\n", strerror(-r)), r;
	print_stats(b->kmod ? "raw module: driver acks over genl" : "raw uffd reader thread", &b->raw);
	printf("    added %.1f us: x%.2f RTT\n", b->raw.median - b->none.median,
	       (b->raw.median - b->none.median) / b->rtt.median);
	fflush(stdout);
	r = mmnd_run_init(&b->m, b->mmnd);
	if (!r)
		r = mmnd_run_start(&b->m, args, 20000);
	if (r < 0)
		return fprintf(stderr, "e2e: mmnd: %s\n", strerror(-r)), r;
	r = run_mmn(b);
	mmnd_run_fini(&b->m);
	return r;
}

int main(int argc, char **argv)
{
	struct bench b = {.rounds = getenv("MMN_BENCH_ROUNDS") ? atoi(getenv("MMN_BENCH_ROUNDS")) : 2000};
	char load[64];
	int r;

	samples_load(load, sizeof(load));
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--source=kmod"))
			b.kmod = true;
		else if (!strncmp(argv[i], "--rounds=", 9) && !getenv("MMN_BENCH_ROUNDS"))
			b.rounds = atoi(argv[i] + 9);
		else if (strcmp(argv[i], "--source=uffd"))
			b.rounds = 0;
	}
	if (argc < 2 || b.rounds < 1) {
		fprintf(stderr, "usage: %s MMND [--source=uffd|kmod] [--rounds=N]\n", argv[0]);
		return 2;
	}
	b.mmnd = argv[1];
	b.v = calloc((size_t)b.rounds, sizeof(*b.v));
	b.fixed = b.kmod ? free_address() : NULL;
	if (!b.v || (b.kmod && !b.fixed))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	printf("e2e: source %s, %d rounds of munmap(16 KiB), load %s\n", b.kmod ? "kmod" : "uffd", b.rounds, load);
	r = run(&b);
	free(b.v);
	return r < 0;
}
