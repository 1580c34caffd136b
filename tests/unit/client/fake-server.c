/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fake-server.h"
#include "lib/scm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void wake(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void new_page(struct fake_server *fs)
{
	size_t len;

	if (fs->sp)
		munmap(fs->sp, MMN_SEQPAGE_SIZE(fs->nslots));
	if (fs->memfd >= 0)
		close(fs->memfd);
	fs->nslots = FS_MAX_SUBS;
	len = MMN_SEQPAGE_SIZE(fs->nslots);
	fs->memfd = memfd_create("fake-seqpage", MFD_CLOEXEC);
	if (fs->memfd < 0 || ftruncate(fs->memfd, (off_t)len) < 0) {
		fprintf(stderr, "fake-server: memfd %d: %m\n", fs->memfd);
		abort();
	}
	fs->sp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fs->memfd, 0);
	if (fs->sp == MAP_FAILED) {
		fprintf(stderr, "fake-server: mmap of the sequence page: %m\n");
		abort();
	}
	fs->sp->magic = MMN_SEQPAGE_MAGIC;
	fs->sp->version = MMN_SEQPAGE_VERSION;
	fs->sp->nslots = fs->nslots;
	memset(fs->subs, 0, FS_MAX_SUBS * sizeof(fs->subs[0]));
	fs->nsubs = 0;
	fs->id_base = fs->next_sub_id;
}

int fs_send(struct fake_server *fs, MmnEnvelope *env)
{
	uint64_t one = 1;

	if (fs->send_note >= 0 && write(fs->send_note, &one, sizeof(one)) != sizeof(one))
		abort();
	return fs->conn < 0 ? -ENOTCONN : mmn__wire_send(fs->conn, env, NULL, 0, 0);
}

static void log_ack(struct fake_server *fs, uint64_t sub_id, uint64_t event_id, uint32_t run)
{
	if (!run)
		fs->bad_runs++;
	if (fs->nack_log < FS_ACK_LOG)
		fs->ack_log[fs->nack_log++] = (struct fs_ack){sub_id, event_id, run};
	fs->nacks++;
	fs->last_ack_sub = sub_id;
	fs->last_ack_event = event_id;
}

static void on_ack_many(struct fake_server *fs, const Mmn__V1__AckMany *m)
{
	fs->nack_many++;
	if (m->n_runs && (!fs->reply_ack_runs || m->n_runs != m->n_sub_ids))
		fs->bad_runs++;
	for (size_t i = 0; i < m->n_sub_ids && i < m->n_event_ids; i++)
		log_ack(fs, m->sub_ids[i], m->event_ids[i], i < m->n_runs ? m->runs[i] : 1);
}

/* The ring's new entries, as mmnd takes them (fs->mu held). */
static void ring_take(struct fake_server *fs)
{
	uint32_t head;

	if (!fs->ring || fs->ring_paused)
		return;
	head = __atomic_load_n(&fs->ring->head, __ATOMIC_ACQUIRE);
	for (; fs->ring_tail != head; fs->ring_tail++) {
		const struct mmn_ack_entry *e = &fs->ring->e[fs->ring_tail % MMN_ACK_RING_ENTRIES];

		log_ack(fs, e->sub_id, e->event_id, e->run);
		fs->nring_entries++;
	}
	__atomic_store_n(&fs->ring->tail, fs->ring_tail, __ATOMIC_RELEASE);
}

static void ring_drop(struct fake_server *fs)
{
	if (fs->ring)
		munmap(fs->ring, MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES));
	if (fs->doorbell >= 0)
		close(fs->doorbell);
	fs->ring = NULL;
	fs->doorbell = -1;
	fs->ring_tail = 0;
}

/* A new ring and doorbell for this connection; its memfd in *@memfd (to close once sent). */
static bool ring_new(struct fake_server *fs, int *memfd)
{
	size_t len = MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES);
	void *p;

	ring_drop(fs);
	*memfd = memfd_create("fake-ackring", MFD_CLOEXEC);
	if (*memfd < 0 || ftruncate(*memfd, (off_t)len) < 0)
		abort();
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	fs->doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p == MAP_FAILED || fs->doorbell < 0)
		abort();
	fs->ring = p;
	fs->ring->magic = MMN_ACK_RING_MAGIC;
	fs->ring->version = MMN_ACK_RING_VERSION;
	fs->ring->nentries = MMN_ACK_RING_ENTRIES;
	return true;
}

static void reply_hello(struct fake_server *fs, uint64_t req, const Mmn__V1__Hello *hello)
{
	Mmn__V1__HelloReply h = MMN__V1__HELLO_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	new_page(fs);
	/* gens as mmnd gives them: from Hello.gen_base, or from 1 for an older mmnd. */
	fs->hello_gen_base = hello->gen_base;
	fs->next_gen = fs->old_gens || !hello->gen_base ? 1 : hello->gen_base;
	h.gens_from_base = !fs->old_gens;
	h.version = fs->reply_version;
	h.source = (char *)(fs->needs_uffd ? "uffd" : "test");
	h.event_mask = fs->needs_uffd ? 0x301 : 0xff;
	h.acks_hold_kernel = !fs->needs_uffd;
	h.events_before_change = !fs->needs_uffd;
	h.needs_uffd = fs->needs_uffd;
	h.registers_uffd = fs->needs_uffd && !fs->old_uffd;
	h.seqpage_slots = fs->nslots;
	h.default_ack_timeout_ms = 1000;
	h.max_batch = fs->max_batch;
	h.ack_runs = fs->reply_ack_runs && hello->ack_runs;
	env.request_id = req;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO_REPLY;
	env.hello_reply = &h;
	h.ack_ring = fs->reply_ack_ring && hello->ack_ring && !fs->reply_without_fd && fs->reply_extra_fd < 0;
	{
		int fds[3] = {fs->memfd, fs->reply_extra_fd, -1};
		size_t nfds = fs->reply_without_fd ? 0 : fs->reply_extra_fd >= 0 ? 2 : 1;

		if (h.ack_ring && ring_new(fs, &fds[1])) {
			fds[2] = fs->doorbell;
			nfds = 3;
		}
		mmn__wire_send(fs->conn, &env, fds, nfds, 0);
		if (h.ack_ring)
			close(fds[1]);
	}
	fs->nhello++;
}

static void reply_status(struct fake_server *fs, uint64_t req, int err)
{
	Mmn__V1__Status st = MMN__V1__STATUS__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	st.error = err;
	env.request_id = req;
	env.body_case = MMN__V1__ENVELOPE__BODY_STATUS;
	env.status = &st;
	fs_send(fs, &env);
}

static uint64_t send_invalidate(struct fake_server *fs, unsigned idx, uint64_t start, uint64_t end, int event,
				bool needs_ack);

static void reply_error(struct fake_server *fs, uint64_t req, int err)
{
	Mmn__V1__Error e = MMN__V1__ERROR__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	e.error = err;
	env.request_id = req;
	env.body_case = MMN__V1__ENVELOPE__BODY_ERROR;
	env.error = &e;
	fs_send(fs, &env);
}

/* What mmnd does for the uffd source: (un)register the page-rounded range with the client's uffd. */
static int uffd_ioctl(struct fake_server *fs, bool reg, uint64_t start, uint64_t end)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	struct uffdio_register r = {.mode = UFFDIO_REGISTER_MODE_WP};
	int fd = fs->uffd >= 0 ? fs->uffd : fs->held_uffd;

	r.range.start = start & ~(ps - 1);
	r.range.len = ((end + ps - 1) & ~(ps - 1)) - r.range.start;
	if (fd < 0)
		return -ENOTCONN;
	if (reg)
		return ioctl(fd, UFFDIO_REGISTER, &r) < 0 ? -errno : 0;
	return ioctl(fd, UFFDIO_UNREGISTER, &r.range) < 0 ? -errno : 0;
}

/*
 * Give the held uffd to the helper process: this process keeps no descriptor
 * of it.  A test may kill the holder (mmnd dies) while the library reconnects
 * and resubscribes to this server: then the uffd is just closed, as mmnd's
 * death would close it.
 */
static void hand_over(struct fake_server *fs)
{
	(void)scm_send_bytes(fs->uffd_holder, "u", 1, fs->held_uffd);
	close(fs->held_uffd);
	fs->held_uffd = -1;
}

/* A new subscription for @m, or NULL with *@err the error mmnd answers. */
static struct fs_sub *new_sub(struct fake_server *fs, const Mmn__V1__Subscribe *m, int *err)
{
	struct fs_sub *s;

	*err = -ENOSPC;
	if (fs->nsubs == FS_MAX_SUBS)
		return NULL;
	*err = -ERANGE; /* gens never wrap */
	if (fs->next_gen > UINT32_MAX)
		return NULL;
	fs->nsubscribe++;
	fs->nresubscribe += m->resubscribe;
	if (fs->needs_uffd) {
		*err = uffd_ioctl(fs, true, m->start, m->start + m->length);
		if (*err < 0 && !m->resubscribe)
			return NULL;
		if (fs->held_uffd >= 0 && fs->uffd_holder > 0)
			hand_over(fs);
	}
	*err = 0;
	s = &fs->subs[fs->nsubs];
	s->id = ++fs->next_sub_id;
	s->start = m->start;
	s->length = m->length;
	s->flags = m->flags;
	s->event_mask = m->event_mask;
	s->slot = fs->nsubs;
	s->gen = (uint32_t)fs->next_gen++;
	s->active = true;
	__atomic_store_n((uint64_t *)(void *)&fs->sp->slots[s->slot], (uint64_t)s->gen << 32,
			 __ATOMIC_RELEASE);
	fs->nsubs++;
	return s;
}

static void fill_reply(Mmn__V1__SubscribeReply *r, const struct fs_sub *s)
{
	r->sub_id = s->id;
	r->seq_slot = s->slot;
	r->seq_gen = s->gen;
	r->ack_timeout_ms = 1000;
}

static void on_subscribe(struct fake_server *fs, uint64_t req, const Mmn__V1__Subscribe *m)
{
	Mmn__V1__SubscribeReply r = MMN__V1__SUBSCRIBE_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	struct fs_sub *s;
	int err;

	fs->last_no_end = m->no_end;
	s = new_sub(fs, m, &err);
	if (!s) {
		if (err == -ENOSPC)
			reply_status(fs, req, err);
		else
			reply_error(fs, req, err);
		return;
	}
	fill_reply(&r, s);
	env.request_id = req;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY;
	env.subscribe_reply = &r;
	fs_send(fs, &env);
	if (fs->inval_after_subscribe)
		fs->burst_event = send_invalidate(fs, fs->nsubs - 1, s->start, s->start + s->length,
						  MMN__V1__EVENT_TYPE__EVENT_UNMAP, true);
}

/* An Error for the whole batch: not a batch-speaking mmnd, too many items, or fs->batch_error. */
static bool reject_batch(struct fake_server *fs, uint64_t req, size_t n)
{
	int err = !fs->max_batch ? -EPROTO : n > fs->max_batch ? -E2BIG : fs->batch_error;

	if (!err)
		return false;
	fs->batch_error = 0;
	fs->nbatch_rejected++;
	reply_error(fs, req, err);
	return true;
}

/* As mmnd: one reply with a result per item, in order, before any Invalidate of the new subs. */
static void on_subscribe_many(struct fake_server *fs, uint64_t req, const Mmn__V1__SubscribeMany *m)
{
	static Mmn__V1__SubscribeResult res[FS_MAX_BATCH], *pres[FS_MAX_BATCH];
	static Mmn__V1__SubscribeReply rep[FS_MAX_BATCH];
	static unsigned made[FS_MAX_BATCH];
	Mmn__V1__SubscribeManyReply r = MMN__V1__SUBSCRIBE_MANY_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	unsigned nmade = 0;

	fs->nbatch++;
	fs->nbatch_items += m->n_items;
	if (reject_batch(fs, req, m->n_items > FS_MAX_BATCH ? SIZE_MAX : m->n_items))
		return;
	for (size_t i = 0; i < m->n_items; i++) {
		const Mmn__V1__Subscribe *it = m->items[i];
		struct fs_sub *s = NULL;

		mmn__v1__subscribe_result__init(&res[i]);
		pres[i] = &res[i];
		if (it->length == fs->item_fail_length && fs->item_fail_err)
			res[i].error = fs->item_fail_err;
		else
			s = new_sub(fs, it, &res[i].error);
		if (!s)
			continue;
		mmn__v1__subscribe_reply__init(&rep[i]);
		fill_reply(&rep[i], s);
		res[i].reply = &rep[i];
		made[nmade++] = fs->nsubs - 1;
	}
	r.n_results = m->n_items;
	r.results = pres;
	env.request_id = req;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY;
	env.subscribe_many_reply = &r;
	if (fs_send(fs, &env) < 0)
		fprintf(stderr, "fake-server: the SubscribeManyReply of %zu items was not sent\n", m->n_items);
	for (unsigned k = 0; k < nmade && fs->inval_after_subscribe; k++) {
		const struct fs_sub *s = &fs->subs[made[k]];

		fs->burst_event = send_invalidate(fs, made[k], s->start, s->start + s->length,
						  MMN__V1__EVENT_TYPE__EVENT_UNMAP, true);
	}
}

int fs_index(struct fake_server *fs, uint64_t id)
{
	uint64_t i = id - fs->id_base - 1;

	return id > fs->id_base && i < fs->nsubs && fs->subs[i].id == id ? (int)i : -1;
}

static void unsubscribe_id(struct fake_server *fs, uint64_t id)
{
	int i = fs_index(fs, id);

	if (i >= 0) {
		fs->subs[i].active = false;
		if (fs->needs_uffd)
			uffd_ioctl(fs, false, fs->subs[i].start, fs->subs[i].start + fs->subs[i].length);
	}
	fs->nunsub++;
}

static void on_unsubscribe_many(struct fake_server *fs, uint64_t req, const Mmn__V1__UnsubscribeMany *m)
{
	static int32_t errs[FS_MAX_BATCH];
	Mmn__V1__UnsubscribeManyReply r = MMN__V1__UNSUBSCRIBE_MANY_REPLY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	fs->nunsub_batch++;
	fs->nunsub_batch_items += m->n_sub_ids;
	if (reject_batch(fs, req, m->n_sub_ids > FS_MAX_BATCH ? SIZE_MAX : m->n_sub_ids))
		return;
	for (size_t i = 0; i < m->n_sub_ids; i++) {
		errs[i] = fs_index(fs, m->sub_ids[i]) < 0 ? -ENOENT : 0;
		unsubscribe_id(fs, m->sub_ids[i]);
	}
	r.n_errors = m->n_sub_ids;
	r.errors = errs;
	env.request_id = req;
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY_REPLY;
	env.unsubscribe_many_reply = &r;
	fs_send(fs, &env);
}

/*
 * mmn__wire_decode(), but knowing the batch bodies too (proto/wire.c does
 * not accept them yet): any Envelope protobuf-c unpacks.
 */
static int decode(const uint8_t *buf, size_t len, MmnEnvelope **out)
{
	*out = mmn__v1__envelope__unpack(NULL, len, buf);
	if (*out && (*out)->body_case == MMN__V1__ENVELOPE__BODY__NOT_SET) {
		mmn__wire_free(*out);
		*out = NULL;
	}
	return *out ? 0 : -EBADMSG;
}

static void on_packet(struct fake_server *fs)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fds[MMN_WIRE_MAX_FDS];
	MmnEnvelope *env;
	size_t nfds;
	ssize_t n;

	ring_take(fs); /* entries published before the packet come first, as mmnd takes them */
	n = mmn__wire_recv(fs->conn, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds);
	if (n == -EAGAIN)
		return;
	if (n <= 0 || decode(buf, (size_t)n, &env) < 0) {
		close(fs->conn);
		fs->conn = -1;
		return;
	}
	if ((unsigned)n > fs->max_packet)
		fs->max_packet = (unsigned)n;
	switch (env->body_case) {
	case MMN__V1__ENVELOPE__BODY_HELLO:
		reply_hello(fs, env->request_id, env->hello);
		fs->conn_paused = fs->pause_after_hello;
		break;
	case MMN__V1__ENVELOPE__BODY_ATTACH_UFFD:
		/* The first client's uffd is the one read (a real mmnd reads all of them). */
		if (nfds == 1 && fs->uffd_holder > 0 && fs->held_uffd < 0) {
			/* a separate process will hold it: this process's fork() must not inherit it */
			fs->held_uffd = fds[0];
			nfds = 0;
		} else if (nfds == 1 && fs->uffd < 0) {
			fs->uffd = fds[0];
			nfds = 0;
		}
		fs->nattach++;
		break;
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE:
		on_subscribe(fs, env->request_id, env->subscribe);
		break;
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE:
		unsubscribe_id(fs, env->unsubscribe->sub_id);
		reply_status(fs, env->request_id, 0);
		break;
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY:
		on_subscribe_many(fs, env->request_id, env->subscribe_many);
		break;
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY:
		on_unsubscribe_many(fs, env->request_id, env->unsubscribe_many);
		break;
	case MMN__V1__ENVELOPE__BODY_ACK:
		fs->nacks++;
		fs->last_ack_sub = env->ack->sub_id;
		fs->last_ack_event = env->ack->event_id;
		break;
	case MMN__V1__ENVELOPE__BODY_ACK_MANY: /* v2: as many Acks, in order */
		on_ack_many(fs, env->ack_many);
		break;
	default:
		break;
	}
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	mmn__wire_free(env);
}

static void on_uffd(struct fake_server *fs)
{
	struct uffd_msg msg;

	while (read(fs->uffd, &msg, sizeof(msg)) == sizeof(msg)) {
		switch (msg.event) {
		case UFFD_EVENT_UNMAP:
			fs->uffd_unmaps++;
			fs->last_unmap_start = msg.arg.remove.start;
			fs->last_unmap_end = msg.arg.remove.end;
			break;
		case UFFD_EVENT_REMOVE:
			fs->uffd_removes++;
			break;
		case UFFD_EVENT_REMAP:
			fs->uffd_remaps++;
			break;
		case UFFD_EVENT_FORK:
			close((int)msg.arg.fork.ufd);
			break;
		}
	}
}

/* A full (or stopping) mmnd: Error{fs->refuse}, request_id 0, then close. */
static void refuse(struct fake_server *fs, int fd)
{
	Mmn__V1__Error e = MMN__V1__ERROR__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	if (fs->refuse_after_hello) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		poll(&p, 1, 5000); /* the Hello is queued: closing now resets the client's socket */
	}
	e.error = fs->refuse;
	e.message = (char *)"refused";
	env.body_case = MMN__V1__ENVELOPE__BODY_ERROR;
	env.error = &e;
	mmn__wire_send(fd, &env, NULL, 0, 0);
	close(fd);
	fs->nconn++;
}

static void *fs_main(void *arg)
{
	struct fake_server *fs = arg;

	for (;;) {
		struct pollfd p[5] = {{.fd = fs->ctl, .events = POLLIN},
				      {.fd = fs->lfd, .events = POLLIN},
				      {.fd = -1, .events = POLLIN},
				      {.fd = -1, .events = POLLIN},
				      {.fd = -1, .events = POLLIN}};

		pthread_mutex_lock(&fs->mu);
		p[2].fd = fs->conn_paused ? -1 : fs->conn;
		p[3].fd = fs->uffd_paused ? -1 : fs->uffd;
		p[4].fd = fs->ring_paused ? -1 : fs->doorbell;
		pthread_mutex_unlock(&fs->mu);
		if (poll(p, 5, -1) < 0)
			continue;
		pthread_mutex_lock(&fs->mu);
		fs->loops++;
		if (p[0].revents) {
			uint64_t n;

			if (read(fs->ctl, &n, sizeof(n)) < 0 || fs->stopping) {
				pthread_mutex_unlock(&fs->mu);
				break;
			}
		}
		if (p[1].revents & POLLIN) {
			int fd = accept4(fs->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0 && fs->refuse) {
				refuse(fs, fd);
			} else if (fd >= 0) {
				if (fs->conn >= 0)
					close(fs->conn);
				fs->conn = fd;
				fs->nconn++;
			}
		} else if (p[2].revents && fs->conn == p[2].fd) {
			on_packet(fs);
		}
		if (p[3].revents && fs->uffd == p[3].fd)
			on_uffd(fs);
		if (p[4].revents && fs->doorbell == p[4].fd) {
			uint64_t n;

			if (read(fs->doorbell, &n, sizeof(n)) == sizeof(n))
				ring_take(fs);
		}
		pthread_cond_broadcast(&fs->cv);
		pthread_mutex_unlock(&fs->mu);
	}
	return NULL;
}

int fs_start(struct fake_server *fs)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	memset(fs, 0, sizeof(*fs));
	fs->conn = fs->uffd = fs->memfd = fs->held_uffd = fs->send_note = fs->doorbell = -1;
	fs->reply_version = MMN_PROTO_VERSION;
	fs->reply_extra_fd = -1;
	fs->subs = calloc(FS_MAX_SUBS, sizeof(*fs->subs));
	if (!fs->subs)
		return -ENOMEM;
	strcpy(fs->dir, "/tmp/mmn-fake-XXXXXX");
	if (!mkdtemp(fs->dir))
		return -errno;
	snprintf(fs->path, sizeof(fs->path), "%s/mmnd.sock", fs->dir);
	strcpy(sa.sun_path, fs->path);
	fs->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fs->lfd < 0 || bind(fs->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fs->lfd, 8) < 0)
		return -errno;
	fs->ctl = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&fs->mu, NULL);
	pthread_cond_init(&fs->cv, NULL);
	return -pthread_create(&fs->thread, NULL, fs_main, fs);
}

static void kick(struct fake_server *fs)
{
	uint64_t one = 1;

	if (write(fs->ctl, &one, sizeof(one)) != sizeof(one))
		abort();
}

void fs_pause_uffd(struct fake_server *fs)
{
	unsigned loops;

	pthread_mutex_lock(&fs->mu);
	fs->uffd_paused = true;
	loops = fs->loops;
	pthread_mutex_unlock(&fs->mu);
	kick(fs);
	fs_wait(fs, &fs->loops, loops + 1);
}

void fs_pause_ring(struct fake_server *fs, bool paused)
{
	unsigned loops;

	pthread_mutex_lock(&fs->mu);
	fs->ring_paused = paused;
	ring_take(fs);
	loops = fs->loops;
	pthread_cond_broadcast(&fs->cv);
	pthread_mutex_unlock(&fs->mu);
	kick(fs);
	fs_wait(fs, &fs->loops, loops + 1);
}

void fs_pause(struct fake_server *fs)
{
	unsigned loops;

	pthread_mutex_lock(&fs->mu);
	fs->conn_paused = true;
	loops = fs->loops;
	pthread_mutex_unlock(&fs->mu);
	kick(fs);
	fs_wait(fs, &fs->loops, loops + 1);
}

void fs_resume(struct fake_server *fs)
{
	pthread_mutex_lock(&fs->mu);
	fs->pause_after_hello = false;
	fs->conn_paused = false;
	pthread_mutex_unlock(&fs->mu);
	kick(fs);
}

void fs_stop(struct fake_server *fs)
{
	pthread_mutex_lock(&fs->mu);
	fs->stopping = true;
	pthread_mutex_unlock(&fs->mu);

	kick(fs);
	pthread_join(fs->thread, NULL);
	close(fs->lfd);
	close(fs->ctl);
	if (fs->conn >= 0)
		close(fs->conn);
	if (fs->uffd >= 0)
		close(fs->uffd);
	if (fs->held_uffd >= 0)
		close(fs->held_uffd);
	ring_drop(fs);
	if (fs->sp)
		munmap(fs->sp, MMN_SEQPAGE_SIZE(fs->nslots));
	if (fs->memfd >= 0)
		close(fs->memfd);
	unlink(fs->path);
	rmdir(fs->dir);
	free(fs->subs);
	fs->subs = NULL;
}

void fs_kill(struct fake_server *fs)
{
	pthread_mutex_lock(&fs->mu);
	if (fs->conn >= 0) {
		/* shutdown: the server thread's poll() still holds a reference to the socket */
		shutdown(fs->conn, SHUT_RDWR);
		close(fs->conn);
	}
	fs->conn = -1;
	if (fs->uffd >= 0)
		close(fs->uffd);
	fs->uffd = -1;
	pthread_mutex_unlock(&fs->mu);
}

static void slot_bump(struct fake_server *fs, const struct fs_sub *s)
{
	struct mmn_seqpage_slot *slot = &fs->sp->slots[s->slot];

	__atomic_store_n(&slot->seq, slot->seq + 1, __ATOMIC_RELEASE);
	wake(&slot->seq);
}

/* fs->mu held. */
static uint64_t send_invalidate(struct fake_server *fs, unsigned idx, uint64_t start, uint64_t end, int event,
				bool needs_ack)
{
	Mmn__V1__Invalidate m = MMN__V1__INVALIDATE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	struct fs_sub *s = &fs->subs[idx];

	slot_bump(fs, s);
	m.sub_id = s->id;
	m.event_id = ++fs->next_event;
	m.start = start;
	m.end = end;
	m.event = event;
	m.blockable = true;
	m.needs_ack = needs_ack;
	m.seq = fs->sp->slots[s->slot].seq;
	env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE;
	env.invalidate = &m;
	fs_send(fs, &env);
	return m.event_id;
}

uint64_t fs_invalidate(struct fake_server *fs, unsigned idx, uint64_t start, uint64_t end, int event,
		       bool needs_ack)
{
	uint64_t ev;

	pthread_mutex_lock(&fs->mu);
	ev = send_invalidate(fs, idx, start, end, event, needs_ack);
	pthread_mutex_unlock(&fs->mu);
	return ev;
}

void fs_end(struct fake_server *fs, unsigned idx, uint64_t event_id)
{
	Mmn__V1__InvalidateEnd m = MMN__V1__INVALIDATE_END__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	struct fs_sub *s;

	pthread_mutex_lock(&fs->mu);
	s = &fs->subs[idx];
	slot_bump(fs, s);
	m.sub_id = s->id;
	m.event_id = event_id;
	m.seq = fs->sp->slots[s->slot].seq;
	env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
	env.invalidate_end = &m;
	fs_send(fs, &env);
	pthread_mutex_unlock(&fs->mu);
}

void fs_release(struct fake_server *fs, unsigned idx)
{
	Mmn__V1__Release m = MMN__V1__RELEASE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	pthread_mutex_lock(&fs->mu);
	m.sub_id = fs->subs[idx].id;
	fs->subs[idx].active = false;
	env.body_case = MMN__V1__ENVELOPE__BODY_RELEASE;
	env.release = &m;
	fs_send(fs, &env);
	pthread_mutex_unlock(&fs->mu);
}

int fs_send_raw(struct fake_server *fs, const void *buf, size_t len)
{
	ssize_t n;

	pthread_mutex_lock(&fs->mu);
	n = fs->conn < 0 ? -1 : send(fs->conn, buf, len, MSG_NOSIGNAL);
	pthread_mutex_unlock(&fs->mu);
	return n == (ssize_t)len ? 0 : -EIO;
}

unsigned fs_get(struct fake_server *fs, const unsigned *counter)
{
	unsigned v;

	pthread_mutex_lock(&fs->mu);
	v = *counter;
	pthread_mutex_unlock(&fs->mu);
	return v;
}

/* SIOCOUTQ of a unix socket: the packets it sent that its peer has not received, in bytes. */
int fs_unread(struct fake_server *fs)
{
	int n = 0;

	pthread_mutex_lock(&fs->mu);
	if (fs->conn >= 0 && ioctl(fs->conn, SIOCOUTQ, &n) < 0)
		n = -errno;
	pthread_mutex_unlock(&fs->mu);
	return n;
}

int fs_fill(struct fake_server *fs)
{
	Mmn__V1__InvalidateEnd m = MMN__V1__INVALIDATE_END__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	int n = 0;

	env.body_case = MMN__V1__ENVELOPE__BODY_INVALIDATE_END;
	env.invalidate_end = &m;
	pthread_mutex_lock(&fs->mu);
	while (fs->conn >= 0 && mmn__wire_send(fs->conn, &env, NULL, 0, 1) == 0)
		n++;
	pthread_mutex_unlock(&fs->mu);
	return n;
}

bool fs_wait(struct fake_server *fs, const unsigned *counter, unsigned n)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&fs->mu);
	while (*counter < n)
		if (pthread_cond_timedwait(&fs->cv, &fs->mu, &ts))
			break;
	ok = *counter >= n;
	pthread_mutex_unlock(&fs->mu);
	return ok;
}
