/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The subscription hash of client-lib/sub.c at scale: 21000 subscriptions
 * (batches, then single ones as the hash grows), and Invalidate,
 * InvalidateEnd and Release for random ones reach exactly their own handle;
 * mmnd restarts twice (with and without batches) and every sub is
 * resubscribed (client-lib/resub.c) and found by its new id; after half of
 * them are removed (in random order) their events are dropped and the
 * others still arrive.  This thread is the only reader of the client's
 * socket and a blocking sender into it (through the fake mmnd): it reads
 * every reply before it sends more, however late mmnd answers.  A
 * correctness test: no timing.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fake-server.h"
#include "lib/dispatch.h"
#include "lib/prng.h"
#include "mmn/mmn.h"
#include "tap.h"

#define NBATCH	20000u /* made by mmn_subscribe_many */
#define NSINGLE 1000u  /* then by mmn_subscribe */
#define NSUBS	(NBATCH + NSINGLE)
#define BASE	0x100000000ull
#define PAGE	0x1000ull
#define NLAG	100u /* removals mmnd reads late: well within a socket's buffer */

static struct mmn_sub *handles[NSUBS];
static unsigned inval[NSUBS], ends[NSUBS], releases[NSUBS], resyncs[NSUBS], resync_ends[NSUBS];
static unsigned total, wrong; /* callbacks, and those whose handle was not their userdata's */
static unsigned fidx[NSUBS];  /* sub i is the fake mmnd's subs[fidx[i]] */

/* Where mmnd keeps each sub (by its start): 0 when every sub is there once. */
static unsigned map_subs(struct fake_server *fs)
{
	unsigned bad = NSUBS;

	pthread_mutex_lock(&fs->mu);
	for (unsigned j = 0; j < fs->nsubs; j++) {
		uint64_t i = (fs->subs[j].start - BASE) / PAGE;

		if (i < NSUBS && fs->subs[j].start == BASE + i * PAGE) {
			fidx[i] = j;
			bad--;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	return bad;
}

static unsigned index_of(struct mmn_sub *s, void *ud)
{
	unsigned i = (unsigned)(uintptr_t)ud;

	total++;
	if (i >= NSUBS || handles[i] != s) {
		wrong++;
		return NSUBS;
	}
	return i;
}

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	unsigned i = index_of(s, ud);

	if (i < NSUBS && r->start == BASE + i * PAGE && r->end == r->start + PAGE)
		(r->event == MMN_EVENT_RESYNC ? resyncs : inval)[i]++;
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	unsigned i = index_of(s, ud);

	if (i < NSUBS)
		(r->event == MMN_EVENT_RESYNC ? resync_ends : ends)[i]++;
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	unsigned i = index_of(s, ud);

	if (i < NSUBS)
		releases[i]++;
}

static struct mmn_sub_opts opts_of(unsigned i)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = MMN_SUB_NONBLOCKING,
		.invalidate = on_inval,
		.invalidate_end = on_end,
		.release = on_release,
		.userdata = (void *)(uintptr_t)i,
	};
	return o;
}

/*
 * Whether the fake mmnd handled @n Unsubscribes (ids of UnsubscribeMany
 * included), and so sent their replies.  Never waits for fs->mu: the server
 * thread holds it while it blocks sending to the client, whose socket only
 * this thread reads; it is not done then.
 */
static bool fs_handled(struct fake_server *fs, unsigned n)
{
	bool done;

	if (pthread_mutex_trylock(&fs->mu))
		return false;
	done = fs->nunsub >= n;
	pthread_mutex_unlock(&fs->mu);
	return done;
}

/* Read and deliver everything mmnd sent so far. */
static void drain(struct mmn_client *c)
{
	for (int k = 0; k < 100000; k++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};
		int r = mmn_dispatch(c);

		if (r <= 0 && poll(&p, 1, 0) <= 0)
			break;
	}
}

/*
 * Until mmnd handled @n Unsubscribes, then read its replies: all of them are
 * queued by then.  This thread is the only reader of the client's socket
 * and, in fs_invalidate() and fs_end(), a blocking sender into it: replies
 * left unread fill it as it sends the next invalidations, and it waits for
 * good.  True when mmnd handled them and nothing it sent is left unread.
 */
static bool unsubscribed(struct fake_server *fs, struct mmn_client *c, unsigned n)
{
	int unread;

	/* Bounded by 500 polls of 10 ms that see nothing: mmnd is busy for as long as it answers. */
	for (int idle = 0; idle < 500 && !fs_handled(fs, n);) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};

		idle += poll(&p, 1, 10) == 0;
		drain(c);
	}
	drain(c);
	if (!fs_handled(fs, n))
		return false;
	unread = fs_unread(fs);
	if (unread)
		tap_diag("%d bytes of mmnd's left unread", unread);
	return !unread;
}

/*
 * The worst cases of unsubscribed(), as a slow mmnd makes them: mmnd reads
 * the Unsubscribes of the NLAG @subs only once mmn_unsubscribe_many()
 * returned.  Then, @full, its first reply finds the client's socket full and
 * it blocks, fs->mu held, until this thread reads; or it answers every one
 * before the client reads a reply.  @n: Unsubscribes handled once these are.
 */
static void unsubscribe_lagging(struct fake_server *fs, struct mmn_client *c, struct mmn_sub **subs, unsigned n,
				bool full)
{
	struct pollfd note = {.fd = eventfd(0, EFD_CLOEXEC), .events = POLLIN};

	fs_pause(fs);
	tap_is_int(mmn_unsubscribe_many(subs, NLAG, NULL), NLAG, "more reach a paused mmnd");
	if (full) {
		tap_ok(fs_fill(fs) > 0, "the client's socket is full");
		pthread_mutex_lock(&fs->mu);
		fs->send_note = note.fd;
		pthread_mutex_unlock(&fs->mu);
	}
	fs_resume(fs);
	if (full)
		tap_ok(poll(&note, 1, 5000) == 1, "mmnd sends its first reply, and blocks");
	else
		tap_ok(fs_wait(fs, &fs->nunsub, n), "mmnd answers them all before the client reads any");
	tap_ok(unsubscribed(fs, c, n), "every reply is read before this thread sends more");
	pthread_mutex_lock(&fs->mu);
	fs->send_note = -1;
	pthread_mutex_unlock(&fs->mu);
	close(note.fd);
}

static bool subscribe_all(struct fake_server *fs, struct mmn_client *c)
{
	static struct mmn_sub_request q[NBATCH];
	static struct mmn_sub_opts o[NSUBS];
	unsigned ok = 0;

	for (unsigned i = 0; i < NSUBS; i++)
		o[i] = opts_of(i);
	for (unsigned i = 0; i < NBATCH; i++)
		q[i] = (struct mmn_sub_request){.start = BASE + i * PAGE, .length = PAGE, .opts = &o[i]};
	tap_is_int(mmn_subscribe_many(c, q, NBATCH), NBATCH, "20000 subscribed in batches");
	for (unsigned i = 0; i < NBATCH; i++)
		handles[i] = q[i].sub;
	for (unsigned i = NBATCH; i < NSUBS; i++)
		ok += mmn_subscribe(c, 0, BASE + i * PAGE, PAGE, &o[i], &handles[i]) == 0;
	tap_is_int(ok, NSINGLE, "and 1000 more one by one");
	return tap_is_int(map_subs(fs), 0, "mmnd has each sub once");
}

/* @n invalidations (and their ends) of random subs; @gone: removed, expect nothing. */
static void invalidate_random(struct fake_server *fs, struct mmn_client *c, uint64_t *seed, unsigned n,
			      const bool *gone, unsigned *want)
{
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (unsigned)prng_below(seed, NSUBS);
		uint64_t ev = fs_invalidate(fs, fidx[i], BASE + i * PAGE, BASE + (i + 1) * PAGE, MMN_EVENT_CLEAR, false);

		fs_end(fs, fidx[i], ev);
		if (!gone || !gone[i])
			want[i]++;
		if (k % 16 == 15)
			drain(c);
	}
	drain(c);
}

static unsigned mismatches(const unsigned *want)
{
	unsigned bad = 0;

	for (unsigned i = 0; i < NSUBS; i++)
		bad += inval[i] != want[i] || ends[i] != want[i];
	return bad;
}

/*
 * mmnd restarts (announcing @max_batch): every sub is resubscribed, a few
 * requests in flight at a time, and gets exactly one RESYNC and its end.
 */
static void restart(struct fake_server *fs, struct mmn_client *c, uint32_t max_batch, unsigned round)
{
	unsigned hellos, bad = 0, target = total + 2 * NSUBS;

	pthread_mutex_lock(&fs->mu);
	fs->max_batch = max_batch;
	hellos = fs->nhello;
	pthread_mutex_unlock(&fs->mu);
	fs_kill(fs);
	for (int k = 0; k < 20000 && total < target; k++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};

		poll(&p, 1, 10);
		mmn_dispatch(c);
	}
	tap_ok(fs_wait(fs, &fs->nhello, hellos + 1), "mmnd restarted (max_batch %u): reconnected", max_batch);
	for (unsigned i = 0; i < NSUBS; i++)
		bad += resyncs[i] != round || resync_ends[i] != round;
	tap_is_int(bad, 0, "every sub got exactly one RESYNC and its end");
	tap_is_int(map_subs(fs), 0, "and is subscribed again, once");
}

int main(void)
{
	static unsigned want[NSUBS];
	static bool gone[NSUBS];
	static struct mmn_sub *removed[NSUBS / 2];
	uint64_t seed = 0x5eed5ca1e;
	struct fake_server fs;
	struct mmn_client *c;
	unsigned nrel = 0, nrm = 0, bad = 0, nunsub;

	tap_require(fs_start(&fs) == 0);
	fs.max_batch = 256;
	tap_require(mmn_connect(fs.path, &c) == 0);
	tap_require(subscribe_all(&fs, c));

	invalidate_random(&fs, c, &seed, 4000, NULL, want);
	tap_is_int(mismatches(want), 0, "4000 random invalidations: each sub got exactly its own, with its end");
	tap_is_int(wrong, 0, "every callback got the handle of its userdata");

	restart(&fs, c, 256, 1);
	invalidate_random(&fs, c, &seed, 2000, NULL, want);
	tap_is_int(mismatches(want), 0, "after it, invalidations by the new ids reach their own sub");
	restart(&fs, c, 0, 2);
	invalidate_random(&fs, c, &seed, 2000, NULL, want);
	tap_is_int(mismatches(want), 0, "after it, invalidations by the new ids reach their own sub");
	tap_is_int(wrong, 0, "every callback got the handle of its userdata");

	for (unsigned k = 0; k < 50; k++) {
		unsigned i = (unsigned)prng_below(&seed, NSUBS);

		if (!gone[i]) {
			fs_release(&fs, fidx[i]);
			gone[i] = true;
			nrel++;
		}
	}
	drain(c);
	for (unsigned i = 0; i < NSUBS; i++)
		bad += releases[i] != gone[i];
	tap_ok(nrel > 40 && !bad, "releases of %u random subs reached exactly them (%u wrong)", nrel, bad);

	nunsub = fs.nunsub;
	while (nrm < NSUBS / 2) {
		unsigned i = (unsigned)prng_below(&seed, NSUBS);

		if (!gone[i]) {
			gone[i] = true;
			removed[nrm++] = handles[i];
		}
	}
	for (unsigned k = 0, m; k < nrm - 2 * NLAG; k += m) {
		m = nrm - 2 * NLAG - k < 2000 ? nrm - 2 * NLAG - k : 2000;
		tap_is_int(mmn_unsubscribe_many(&removed[k], m, NULL), m, "unsubscribe_many of random subs");
		tap_ok(unsubscribed(&fs, c, nunsub + k + m), "mmnd handled the Unsubscribes, its replies are read");
	}
	unsubscribe_lagging(&fs, c, &removed[nrm - 2 * NLAG], nunsub + nrm - NLAG, true);
	unsubscribe_lagging(&fs, c, &removed[nrm - NLAG], nunsub + nrm, false);
	invalidate_random(&fs, c, &seed, 4000, gone, want);
	tap_is_int(mismatches(want), 0, "after removing half: events of removed subs dropped, the others' arrive");
	tap_is_int(wrong, 0, "every callback got the handle of its userdata");
	tap_ok(total > 10000, "callbacks ran (%u)", total);
	mmn_disconnect(c);
	fs_stop(&fs);
	return tap_done();
}
