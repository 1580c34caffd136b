/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: libmmn's receive path (client-lib/conn.c reading and
 * decoding, session.c handling replies, Invalidate/InvalidateEnd/Release/
 * Revoked, the event queue, callback delivery in dispatch.c) for packets
 * "from mmnd".
 *
 * A scripted mmnd on a helper thread answers the handshake of a real
 * client (HelloReply with a sequence page, no userfaultfd) and one
 * Subscribe (sub id SUB_ID, slot 0), then leaves the connection to the
 * target, which writes the input's packets into it and runs
 * mmn_dispatch().  A client whose connection was dropped (as it must be
 * for protocol violations) is replaced before the next input.
 *
 * With F_HANDSHAKE the packets instead answer a new client's Hello (the
 * HelloReply path, the sequence page it maps) on a second socket whose
 * scripted mmnd then hangs up; mmn_connect() must fail or succeed cleanly.
 *
 * Input: byte 0 is a set of flags, then up to 16 packets, each a 2-byte
 * big-endian length and that many bytes.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sanitizer/lsan_interface.h>

/* By path: the daemon's folder, also on the include path, may have headers of the same names. */
#include "../../client-lib/client.h"
#include "../../client-lib/sub.h"
#include "fuzz-input.h"
#include "lib/scm.h"
#include "mmn/mmn.h"
#include "seqpage.h"
#include "wire.h"

enum {
	F_FD = 1 << 0,	      /* a memfd rides along with every packet */
	F_ACK_LATER = 1 << 1, /* invalidate callbacks return MMN_ACK_LATER */
	F_UNSUB = 1 << 2,     /* release callbacks unsubscribe */
	F_DISPATCH_EACH = 1 << 3, /* dispatch after every packet */
	F_HANDSHAKE = 1 << 4,	  /* the packets answer a new client's Hello */
};

#define SUB_ID	    7
#define NSLOTS	    8
#define MAX_PACKETS 16
#define MAX_PACKET  (MMN_WIRE_MAX_MSG + 64)
/*
 * The first inputs (the seed corpus) are each followed by a leak check:
 * libFuzzer checks only when an input allocated more than it freed, and
 * then a pointer left on the stack can hide a leak, so a seed alone would
 * catch nothing.  Later inputs are left to libFuzzer (a check costs ms).
 */
#define LEAK_CHECKED_INPUTS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char sock_path[108];
static int listen_fd = -1;
static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t srv_cond = PTHREAD_COND_INITIALIZER; /* with srv_lock: srv_fd changed */
static int srv_fd = -1; /* under srv_lock: the latest connection, once its Subscribe was answered */

/* The handshake socket: the script is set by the fuzzing thread before it connects. */
static char hs_path[108];
static int hs_listen = -1;
static pthread_mutex_t hs_lock = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *hs_data; /* under hs_lock; valid until the next input */
static size_t hs_size;
static bool hs_fd;

static struct mmn_client *client;
static struct mmn_sub *sub;
static uint8_t flags;
static uint8_t region[4 * 4096] __attribute__((aligned(4096)));

static int page_memfd(void)
{
	int fd = memfd_create("fuzz-seqpage", MFD_CLOEXEC);
	struct mmn_seqpage hdr = {.magic = MMN_SEQPAGE_MAGIC, .version = MMN_SEQPAGE_VERSION, .nslots = NSLOTS};

	if (fd < 0 || ftruncate(fd, MMN_SEQPAGE_SIZE(NSLOTS)) < 0 || pwrite(fd, &hdr, sizeof(hdr), 0) < 0)
		abort();
	return fd;
}

/* One reply of the scripted mmnd; false once the peer is gone. */
static bool serve_one(int fd, bool *subscribed)
{
	Mmn__V1__HelloReply hr = MMN__V1__HELLO_REPLY__INIT;
	Mmn__V1__SubscribeReply sr = MMN__V1__SUBSCRIBE_REPLY__INIT;
	MmnEnvelope out = MMN__V1__ENVELOPE__INIT, *in;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fds[MMN_WIRE_MAX_FDS], memfd;
	size_t nfds = 0;
	ssize_t n;

	if (poll(&p, 1, 5000) <= 0)
		return false;
	n = mmn__wire_recv(fd, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds);
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	if (n == -EAGAIN)
		return true;
	if (n <= 0 || mmn__wire_decode(buf, (size_t)n, &in) < 0)
		return false;
	out.request_id = in->request_id;
	if (in->body_case == MMN__V1__ENVELOPE__BODY_HELLO) {
		hr.version = 2; /* v2 reads v1 messages and EventBatch records */
		hr.source = (char *)"test";
		hr.event_mask = 0x3f;
		hr.max_message_size = MMN_WIRE_MAX_MSG;
		hr.default_ack_timeout_ms = 1000;
		hr.max_ack_timeout_ms = 1500;
		hr.seqpage_slots = NSLOTS;
		hr.client_id = 1;
		out.body_case = MMN__V1__ENVELOPE__BODY_HELLO_REPLY;
		out.hello_reply = &hr;
		memfd = page_memfd();
		mmn__wire_send(fd, &out, &memfd, 1, 0);
		close(memfd);
	} else if (in->body_case == MMN__V1__ENVELOPE__BODY_SUBSCRIBE) {
		sr.sub_id = SUB_ID;
		sr.seq_slot = 0;
		sr.seq_gen = 1;
		sr.ack_timeout_ms = 1000;
		out.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY;
		out.subscribe_reply = &sr;
		mmn__wire_send(fd, &out, NULL, 0, 0);
		*subscribed = true;
	}
	mmn__wire_free(in);
	return true;
}

static void *server(void *arg)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		bool subscribed = false;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		while (!subscribed && serve_one(fd, &subscribed))
			;
		pthread_mutex_lock(&srv_lock);
		if (srv_fd >= 0)
			close(srv_fd);
		srv_fd = subscribed ? fd : -1;
		pthread_cond_broadcast(&srv_cond);
		pthread_mutex_unlock(&srv_lock);
		if (!subscribed)
			close(fd);
	}
}

static void send_packets(int fd, const uint8_t *data, size_t size, bool with_fd, bool dispatch_each);

/* Answers each Hello on the handshake socket with the current script, then hangs up. */
static void *hs_server(void *arg)
{
	for (;;) {
		int fd = accept4(hs_listen, NULL, NULL, SOCK_CLOEXEC);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint8_t buf[MMN_WIRE_MAX_MSG];

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		if (poll(&p, 1, 5000) == 1 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
			uint8_t *script;
			size_t len;
			bool with_fd;

			/* A copy: the client may give up before all is sent, and the input is gone then. */
			pthread_mutex_lock(&hs_lock);
			len = hs_size;
			with_fd = hs_fd;
			script = malloc(len ? len : 1);
			if (script && len)
				memcpy(script, hs_data, len);
			pthread_mutex_unlock(&hs_lock);
			if (script)
				send_packets(fd, script, len, with_fd, false);
			free(script);
		}
		close(fd);
	}
}

static int listen_on(char *path, const char *what)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	snprintf(path, 108, "/tmp/mmn-fuzz-%s-%d.sock", what, (int)getpid());
	strcpy(sa.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
		abort();
	return fd;
}

/* libFuzzer ends with exit(): leave no socket behind. */
static void remove_sockets(void)
{
	unlink(sock_path);
	unlink(hs_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pthread_t t;

	listen_fd = listen_on(sock_path, "client");
	hs_listen = listen_on(hs_path, "handshake");
	atexit(remove_sockets);
	if (pthread_create(&t, NULL, server, NULL) != 0)
		abort();
	pthread_detach(t);
	if (pthread_create(&t, NULL, hs_server, NULL) != 0)
		abort();
	pthread_detach(t);
	return 0;
}

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	return flags & F_ACK_LATER ? MMN_ACK_LATER : 0;
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	if ((flags & F_UNSUB) && s == sub) {
		sub = NULL;
		mmn_unsubscribe(s);
	}
}

/* A connected client with one live subscription, and mmnd's end of it. */
static int fresh_client(void)
{
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .flags = MMN_SUB_BLOCKING,
				 .invalidate = on_invalidate,
				 .release = on_release};
	struct timespec deadline;
	int fd;

	mmn_disconnect(client);
	client = NULL;
	sub = NULL;
	if (mmn_connect(sock_path, &client) != 0)
		abort();
	if (mmn_subscribe(client, 0, (uintptr_t)region, sizeof(region), &o, &sub) != 0)
		abort();
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&srv_lock);
	/* The reply reached us before the server thread published its end. */
	while (srv_fd < 0 && pthread_cond_timedwait(&srv_cond, &srv_lock, &deadline) == 0)
		;
	fd = srv_fd;
	srv_fd = -1;
	pthread_mutex_unlock(&srv_lock);
	if (fd < 0)
		abort();
	return fd;
}

static void send_packet(int fd, const uint8_t *p, size_t n, bool with_fd)
{
	int mfd = with_fd ? page_memfd() : -1;

	(void)scm_send_bytes(fd, p, n, mfd);
	if (mfd >= 0)
		close(mfd);
}

static void dispatch(void)
{
	for (int i = 0; i < 64 && mmn_dispatch(client) > 0; i++)
		;
}

/* What the client sent back (Acks, Unsubscribes): read and dropped. */
static void drain(int fd)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fds[MMN_WIRE_MAX_FDS];
	size_t nfds;

	while (mmn__wire_recv(fd, buf, sizeof(buf), fds, MMN_WIRE_MAX_FDS, &nfds) > 0)
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
}

/* A new client's Hello answered by the packets; it must fail or work, nothing else. */
static void handshake(const uint8_t *data, size_t size)
{
	struct mmn_client *c = NULL;
	int r;

	pthread_mutex_lock(&hs_lock);
	hs_data = data;
	hs_size = size;
	hs_fd = flags & F_FD;
	pthread_mutex_unlock(&hs_lock);
	r = mmn_connect(hs_path, &c);
	pthread_mutex_lock(&hs_lock);
	hs_data = NULL;
	hs_size = 0;
	pthread_mutex_unlock(&hs_lock);
	if (r == 0)
		mmn_disconnect(c);
	else if (c || r > 0)
		abort();
}

static void send_packets(int fd, const uint8_t *data, size_t size, bool with_fd, bool dispatch_each)
{
	for (int i = 0; i < MAX_PACKETS && size > 0; i++) {
		const uint8_t *pkt;
		size_t n = fuzz_next_packet(&data, &size, MAX_PACKET, &pkt);

		send_packet(fd, pkt, n, with_fd);
		if (dispatch_each)
			dispatch();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static unsigned inputs;

	if (size < 1)
		return 0;
	flags = data[0];
	if (flags & F_HANDSHAKE) {
		handshake(data + 1, size - 1);
		return 0;
	}
	if (!client || client->state != CONN_CONNECTED || !sub || sub->state != HANDLE_ACTIVE) {
		if (fd >= 0)
			close(fd);
		fd = fresh_client();
	}
	send_packets(fd, data + 1, size - 1, flags & F_FD, flags & F_DISPATCH_EACH);
	dispatch();
	drain(fd);
	if (inputs++ < LEAK_CHECKED_INPUTS && __lsan_do_recoverable_leak_check())
		abort();
	return 0;
}
