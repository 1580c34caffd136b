/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A scripted stand-in for mmnd, speaking proto/wire.h on a real listening
 * SOCK_SEQPACKET socket from a thread of the test process.  It answers
 * Hello/Subscribe/Unsubscribe/Ack/AttachUffd, and SubscribeMany/
 * UnsubscribeMany (when max_batch is set), by itself; the test drives
 * invalidations, connection loss and malformed input.  With needs_uffd it
 * registers each subscribed range with the client's uffd (strictly, unless
 * the Subscribe says resubscribe) and unregisters it on Unsubscribe, as
 * mmnd does (without mmnd's overlap bookkeeping).
 */
#ifndef MMN_TEST_FAKE_SERVER_H
#define MMN_TEST_FAKE_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ack-ring.h"
#include "seqpage.h"
#include "wire.h"

#define FS_MAX_SUBS 32768 /* and slots of the sequence page */
#define FS_MAX_BATCH 1024 /* items of one SubscribeMany/UnsubscribeMany it can answer (more: -E2BIG) */

struct fs_sub {
	uint64_t id, start, length, event_mask;
	uint32_t flags, slot, gen;
	bool active;
};

#define FS_ACK_LOG 64

struct fake_server {
	char dir[64], path[108];
	int lfd, conn, ctl;
	pthread_t thread;
	pthread_mutex_t mu; /* everything below */
	pthread_cond_t cv;  /* any change */

	/* Configuration, set before the client connects. */
	uint32_t reply_version;
	bool reply_without_fd, needs_uffd;
	int reply_extra_fd; /* >= 0: HelloReply carries it as a second descriptor */
	bool uffd_paused; /* stop reading the client's uffd (a stuck mmnd): fs_pause_uffd() */
	bool stopping;
	/*
	 * > 0: once the first Subscribe registered its range, hand the client's
	 * uffd to this socket (a helper process) and keep none.
	 */
	int uffd_holder;
	int refuse;		 /* non-zero: answer a connection with Error{refuse} and close it */
	bool refuse_after_hello; /* with refuse: first wait until the Hello is queued, leave it unread */
	bool old_uffd;	/* with needs_uffd: an mmnd that does not register ranges (registers_uffd false) */
	/*
	 * old_gens: an mmnd without Hello.gen_base (gens_from_base false), gens
	 * from 1 on every connection.  Otherwise gens start at the Hello's
	 * gen_base (next_gen; a test may raise it) and Subscribe fails with
	 * -ERANGE past 2^32 - 1.  hello_gen_base: the last Hello's.
	 */
	bool old_gens;
	uint64_t next_gen, hello_gen_base;
	unsigned loops; /* server loop iterations */
	/*
	 * Right after a SubscribeReply, send an Invalidate{needs_ack} for the new
	 * sub in the same burst (before reading anything else); burst_event is its id.
	 */
	bool inval_after_subscribe;
	uint64_t burst_event;
	/*
	 * Batches: HelloReply.max_batch (0: an mmnd without batches, which
	 * answers SubscribeMany/UnsubscribeMany with Error{-EPROTO}); more
	 * items than that: Error{-E2BIG}.  An item of length item_fail_length
	 * fails with item_fail_err.  batch_error != 0: the next SubscribeMany
	 * is answered with Error{batch_error} as a whole (then it is reset).
	 * With inval_after_subscribe, every new sub of a batch is invalidated
	 * (needs_ack) right after the reply, in the same burst.
	 */
	uint32_t max_batch;
	/*
	 * pause_after_hello: once a HelloReply is sent, read nothing more from
	 * the client (conn_paused) until fs_resume(): its requests wait.
	 */
	bool pause_after_hello, conn_paused;
	uint64_t item_fail_length;
	int item_fail_err;
	int batch_error;
	unsigned nbatch, nbatch_items;	       /* SubscribeMany seen, and their items */
	unsigned nunsub_batch, nunsub_batch_items; /* UnsubscribeMany seen, and their ids */
	unsigned nbatch_rejected;	       /* SubscribeMany/UnsubscribeMany answered with an Error */
	unsigned max_packet;		       /* largest packet received */
	int send_note; /* >= 0: an eventfd fs_send() signals, fs->mu held, before each packet it sends */

	int memfd;
	struct mmn_seqpage *sp; /* read-write view of the current connection's page */
	uint32_t nslots;
	struct fs_sub *subs; /* FS_MAX_SUBS; subs[i].id == id_base + i + 1 */
	unsigned nsubs;
	uint64_t id_base, next_sub_id, next_event;

	unsigned nconn, nhello, nunsub, nacks, nattach; /* nunsub: Unsubscribes and ids of UnsubscribeMany */
	unsigned nack_many; /* AckMany packets (each counted in nacks per pair too) */
	/*
	 * reply_ack_runs: HelloReply.ack_runs.  Every AckMany entry is kept in
	 * ack_log (up to FS_ACK_LOG; run 1 without runs); bad_runs counts
	 * AckMany packets with runs the reply did not allow, or malformed.
	 */
	bool reply_ack_runs;
	struct fs_ack {
		uint64_t sub_id, event_id;
		uint32_t run;
	} ack_log[FS_ACK_LOG];
	unsigned nack_log, bad_runs;
	/*
	 * reply_ack_ring: answer Hello.ack_ring with a ring (proto/ack-ring.h)
	 * and its doorbell.  Its entries are taken as mmnd takes them (at the
	 * doorbell, and before each packet) into nacks and ack_log, counted in
	 * nring_entries; ring_paused leaves them in the ring (fs_pause_ring()).
	 */
	bool reply_ack_ring, ring_paused;
	struct mmn_ack_ring *ring; /* the current connection's, or NULL */
	int doorbell;
	uint32_t ring_tail;
	unsigned nring_entries;
	bool last_no_end; /* Subscribe.no_end of the last Subscribe */
	uint64_t last_ack_sub, last_ack_event;
	int uffd;
	int held_uffd; /* for uffd_holder: registered with, not read, until handed over */
	unsigned nsubscribe, nresubscribe;
	unsigned uffd_unmaps, uffd_removes, uffd_remaps;
	uint64_t last_unmap_start, last_unmap_end;
};

int fs_start(struct fake_server *fs);
void fs_stop(struct fake_server *fs);
/* Drop the client's connection as a dying mmnd would (the listener stays). */
void fs_kill(struct fake_server *fs);
/* Start an invalidation of subs[idx] over [start, end): seq becomes odd.  Returns the event_id. */
uint64_t fs_invalidate(struct fake_server *fs, unsigned idx, uint64_t start, uint64_t end, int event,
		       bool needs_ack);
void fs_end(struct fake_server *fs, unsigned idx, uint64_t event_id);
void fs_release(struct fake_server *fs, unsigned idx);
/* The index in subs[] of the sub mmnd knows as @id, or -1. */
int fs_index(struct fake_server *fs, uint64_t id);
int fs_send_raw(struct fake_server *fs, const void *buf, size_t len);
/* Stop reading the client's requests; returns once the server thread no longer polls the connection. */
void fs_pause(struct fake_server *fs);
/* Read the client's requests again after pause_after_hello or fs_pause(). */
void fs_resume(struct fake_server *fs);
/* Bytes of what the server sent that the client has not read yet (0 without a connection), or -errno. */
int fs_unread(struct fake_server *fs);
/*
 * Fill the client's socket with packets it drops (InvalidateEnd of no sub):
 * the server's next send blocks until the client reads.  Returns how many.
 */
int fs_fill(struct fake_server *fs);
/* Stop reading the uffd; returns once the server thread no longer polls it. */
void fs_pause_uffd(struct fake_server *fs);
/* Stop (@paused) or resume taking the ack ring's entries; resuming takes what is there. */
void fs_pause_ring(struct fake_server *fs, bool paused);
int fs_send(struct fake_server *fs, MmnEnvelope *env);
/* Wait until *@counter >= @n (under fs->mu), at most 5 s.  Returns true when reached. */
bool fs_wait(struct fake_server *fs, const unsigned *counter, unsigned n);
/* *@counter read under fs->mu. */
unsigned fs_get(struct fake_server *fs, const unsigned *counter);

#endif
