/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inline mmn_read_begin()/mmn_read_retry() of mmn.h (ABI 2: the value
 * is the slot word) against a fake mmnd (fake-server.c): what they report
 * for each state of a subscription (odd slot, slot given away, reconnection
 * onto the same slot and seq, fork child, release), that the gens of a
 * reconnection start above every gen the client saw (Hello.gen_base), what
 * an mmnd without gen_base and an exhausted gen space do, and that ABI 1
 * (mmn_read_begin_slow@MMN_1.2 with the exported mmn_read_retry, as
 * programs built against the older mmn.h use them) and the exported
 * functions of MMN_1.0 still report the same collisions.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake-server.h"
#include "lib/read-waiter.h"
#include "lib/dispatch.h"
#include "mmn/mmn.h"
#include "tap.h"

struct rec {
	unsigned inval, ends, releases, resyncs;
	int reason; /* of the last release */
};

static uint64_t (*old_begin)(struct mmn_sub *);
static bool (*old_retry)(struct mmn_sub *, uint64_t);

static int on_inval(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct rec *rec = ud;

	(void)s;
	rec->inval++;
	rec->resyncs += r->event == MMN_EVENT_RESYNC;
	return 0;
}

static void on_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	(void)s, (void)r;
	((struct rec *)ud)->ends++;
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	(void)s;
	((struct rec *)ud)->releases++;
	((struct rec *)ud)->reason = reason;
}

static struct mmn_sub_opts opts_for(struct rec *rec)
{
	struct mmn_sub_opts o = {.size = sizeof(o),
				 .flags = MMN_SUB_NONBLOCKING,
				 .invalidate = on_inval,
				 .invalidate_end = on_end,
				 .release = on_release,
				 .userdata = rec};
	return o;
}

/* The slot word the fake mmnd wrote for subs[idx]. */
static uint64_t slot_word(struct fake_server *fs, unsigned idx)
{
	uint64_t v;

	pthread_mutex_lock(&fs->mu);
	v = __atomic_load_n((uint64_t *)(void *)&fs->sp->slots[fs->subs[idx].slot], __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&fs->mu);
	return v;
}

/* The gen_base of the last Hello the fake mmnd answered, and the slot of subs[idx]. */
static uint64_t hello_base(struct fake_server *fs)
{
	uint64_t v;

	pthread_mutex_lock(&fs->mu);
	v = fs->hello_gen_base;
	pthread_mutex_unlock(&fs->mu);
	return v;
}

static unsigned slot_of(struct fake_server *fs, unsigned idx)
{
	unsigned v;

	pthread_mutex_lock(&fs->mu);
	v = fs->subs[idx].slot;
	pthread_mutex_unlock(&fs->mu);
	return v;
}

/* Quiescent: the inline value is the slot word; ABI 1 and MMN_1.0 agree in their own format. */
static void test_quiescent(struct fake_server *fs, struct mmn_sub *s, unsigned idx)
{
	uint64_t seq = mmn_read_begin(s), w = slot_word(fs, idx), v1 = mmn_read_begin_slow(s);

	tap_ok(!(seq & 1), "quiescent: read_begin is even");
	tap_is_u64(seq, w, "it is the slot word (gen << 32 | seq)");
	tap_ok(!mmn_read_retry(s, seq), "read_retry: no collision");
	tap_ok((uint32_t)v1 == (uint32_t)w && (v1 >> 32) != (w >> 32),
	       "ABI 1 (mmn_read_begin_slow@MMN_1.2): epoch << 32 | seq");
	tap_ok(!old_retry(s, v1), "and its retry (the exported mmn_read_retry) agrees");
	tap_is_u64(old_begin(s), v1, "the exported mmn_read_begin (MMN_1.0) returns ABI 1's value");
	tap_ok(mmn_read_retry(s, seq + 2) && mmn_read_retry(s, seq ^ (1ull << 33)),
	       "another seq or another gen collides");
	tap_ok(old_retry(s, v1 + 2) && old_retry(s, v1 ^ (1ull << 33)), "ABI 1: another seq or epoch collides");
}

/* Odd slot: retry collides, begin waits for the end. */
static void test_odd(struct fake_server *fs, struct mmn_client *c, struct mmn_sub *s, unsigned idx,
		     struct rec *rec)
{
	uint64_t seq = mmn_read_begin(s), v1 = mmn_read_begin_slow(s), ev;
	struct read_waiter w;

	ev = fs_invalidate(fs, idx, 0x10000, 0x11000, MMN_EVENT_UNMAP, false);
	tap_ok(slot_word(fs, idx) & 1, "the invalidation made the slot odd");
	tap_ok(mmn_read_retry(s, seq), "odd slot: read_retry collides");
	tap_ok(old_retry(s, v1), "ABI 1: collides too");
	read_waiter_start(&w, s);
	fs_end(fs, idx, ev);
	read_waiter_join(&w);
	tap_ok(w.saw_change, "read_begin waited for the end of the invalidation");
	tap_ok(!(w.seq & 1) && !mmn_read_retry(s, w.seq), "and returned a valid even value");
	tap_ok(mmn_read_retry(s, seq), "the value from before the invalidation still collides");
	dispatch_until(c, &rec->ends, rec->ends + 1);
}

/*
 * Reconnection to a fresh mmnd that gives the sub the same slot with the
 * same seq: its gen starts above every gen the client saw, so the slot word
 * differs and a value from before collides (ABI 1: by the epoch).
 */
static void test_reconnect(struct fake_server *fs, struct mmn_client *c, struct mmn_sub *s, struct rec *rec)
{
	uint64_t seq = mmn_read_begin(s), v1 = mmn_read_begin_slow(s), before = slot_word(fs, 0), fresh;
	unsigned ends = rec->ends, slot = slot_of(fs, 0);

	fs_kill(fs);
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "connection lost");
	tap_ok(mmn_read_retry(s, seq), "while disconnected: read_retry collides");
	tap_ok(mmn_read_begin_slow(NULL) & 1, "read_begin_slow(NULL) is odd");
	tap_ok(mmn_read_begin_slow2(NULL) & 1 && mmn_read_retry(NULL, mmn_read_begin_slow2(NULL)),
	       "read_begin_slow2(NULL) is odd and collides");
	dispatch_until(c, &rec->resyncs, 1);
	dispatch_until(c, &rec->ends, ends + 1); /* the RESYNC's end publishes the slot */
	tap_is_u64(hello_base(fs), (before >> 32) + 1, "Hello.gen_base: one above the highest gen given");
	tap_ok(slot_of(fs, 0) == slot && (uint32_t)slot_word(fs, 0) == (uint32_t)before,
	       "the new mmnd gave the same slot with the same seq");
	tap_ok(slot_word(fs, 0) >> 32 > before >> 32, "and a higher gen");
	tap_ok(mmn_read_retry(s, seq), "a value from before the reconnection collides");
	tap_ok(old_retry(s, v1), "ABI 1: so does its value from before");
	fresh = mmn_read_begin(s);
	tap_ok(!(fresh & 1) && !mmn_read_retry(s, fresh) && fresh == slot_word(fs, 0), "a new value is valid");
	tap_ok(!old_retry(s, mmn_read_begin_slow(s)), "ABI 1: a new value is valid");
}

/* mmnd gave the slot away (new gen): retry collides, begin waits, then Release. */
static void test_gen(struct fake_server *fs, struct mmn_client *c, struct mmn_sub *s, unsigned idx,
		     struct rec *rec)
{
	uint64_t seq = mmn_read_begin(s), v1 = mmn_read_begin_slow(s), w0 = slot_word(fs, idx);
	struct read_waiter w;

	pthread_mutex_lock(&fs->mu);
	__atomic_store_n((uint64_t *)(void *)&fs->sp->slots[fs->subs[idx].slot], w0 + (7ull << 32),
			 __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fs->mu);
	tap_ok(mmn_read_retry(s, seq) && old_retry(s, v1), "slot given away (new gen, same seq): collision (both ABIs)");
	read_waiter_start(&w, s);
	fs_release(fs, idx);
	dispatch_until(c, &rec->releases, 1);
	read_waiter_join(&w);
	tap_ok(w.saw_change, "read_begin waited while the slot had another gen, until the Release");
	tap_ok((w.seq & 1) && mmn_read_retry(s, w.seq), "then returned an odd value that collides");
	tap_ok((mmn_read_begin(s) & 1) && (old_begin(s) & 1) && (mmn_read_begin_slow(s) & 1),
	       "released: read_begin is odd at once (both ABIs)");
	tap_ok(mmn_read_retry(s, mmn_read_begin(s)) && old_retry(s, old_begin(s)), "and collides");
}

/* In a fork child the inline readers report a collision; the parent is unaffected. */
static void test_fork(struct fake_server *fs, struct mmn_sub *s, unsigned idx)
{
	uint64_t seq = mmn_read_begin(s), v1 = mmn_read_begin_slow(s);
	int status;
	pid_t pid;

	tap_ok(!mmn_read_retry(s, seq), "before fork: valid");
	pid = fork();
	if (pid == 0) {
		uint64_t b = mmn_read_begin(s);
		int bad = 0;

		bad |= !mmn_read_retry(s, seq) << 0;
		bad |= !(b & 1) << 1;
		bad |= !mmn_read_retry(s, b) << 2;
		bad |= !old_retry(s, v1) << 3;
		bad |= (old_begin(s) != 1) << 4;
		bad |= (mmn_read_begin_slow(s) != 1) << 5;
		bad |= !old_retry(s, old_begin(s)) << 6;
		_exit(bad);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "fork child: a parent's value collides, read_begin is odd and collides (both ABIs)");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		tap_diag("child status %#x", status);
	tap_ok(!mmn_read_retry(s, seq) && seq == slot_word(fs, idx), "parent: its value is still valid");
}

/*
 * An mmnd without Hello.gen_base: the first connection reads as usual; on a
 * reconnection its gens restart at 1 (same slot, gen and seq as before), so
 * every sub is released with -ESTALE, and a new sub works.
 */
static void test_old_mmnd(void)
{
	struct fake_server fs;
	struct rec rec = {0}, rec2 = {0};
	struct mmn_sub_opts o = opts_for(&rec), o2 = opts_for(&rec2);
	struct mmn_client *c;
	struct mmn_sub *s, *s2;
	uint64_t seq, before, ev;

	tap_require(fs_start(&fs) == 0);
	fs.old_gens = true;
	tap_require(mmn_connect(fs.path, &c) == 0);
	tap_require(mmn_subscribe(c, 0, 0x10000, 0x1000, &o, &s) == 0);
	seq = mmn_read_begin(s);
	before = slot_word(&fs, 0);
	tap_ok(seq == before && !mmn_read_retry(s, seq), "old mmnd, first connection: a valid value");
	ev = fs_invalidate(&fs, 0, 0x10000, 0x11000, MMN_EVENT_UNMAP, false);
	tap_ok(mmn_read_retry(s, seq), "an invalidation collides");
	fs_end(&fs, 0, ev);
	dispatch_until(c, &rec.ends, 1);
	seq = mmn_read_begin(s);
	before = slot_word(&fs, 0);
	fs_kill(&fs);
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "connection lost");
	dispatch_until(c, &rec.releases, 1);
	tap_is_int(rec.reason, -ESTALE, "reconnected to an old mmnd: the sub is released with -ESTALE");
	tap_ok(rec.resyncs == 1, "after a RESYNC");
	tap_ok(mmn_read_retry(s, seq) && (mmn_read_begin(s) & 1), "its value collides, read_begin is odd");
	tap_require(mmn_subscribe(c, 0, 0x10000, 0x1000, &o2, &s2) == 0);
	tap_is_u64(slot_word(&fs, 0), before & ~0xffffffffull, "the old mmnd gave a new sub gen 1 again");
	seq = mmn_read_begin(s2);
	tap_ok(!(seq & 1) && !mmn_read_retry(s2, seq), "a new sub reads as usual");
	tap_is_int(mmn_unsubscribe(s2), 0, "unsubscribe the new sub");
	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe the released sub");
	mmn_disconnect(c);
	fs_stop(&fs);
}

/*
 * The client was given gen 2^32 - 1: the next Hello asks for 2^32, where no
 * gen is left; mmnd refuses the resubscription (-ERANGE, the release
 * reason) and every Subscribe, rather than wrap to a gen the client saw.
 */
static void test_gens_exhausted(void)
{
	struct fake_server fs;
	struct rec rec = {0}, rec2 = {0};
	struct mmn_sub_opts o = opts_for(&rec), o2 = opts_for(&rec2);
	struct mmn_client *c;
	struct mmn_sub *s, *s2;
	uint64_t seq;

	tap_require(fs_start(&fs) == 0);
	tap_require(mmn_connect(fs.path, &c) == 0);
	tap_is_u64(hello_base(&fs), 1, "a new client asks for gens from 1");
	pthread_mutex_lock(&fs.mu);
	fs.next_gen = UINT32_MAX;
	pthread_mutex_unlock(&fs.mu);
	tap_require(mmn_subscribe(c, 0, 0x10000, 0x1000, &o, &s) == 0);
	seq = mmn_read_begin(s);
	tap_ok(seq >> 32 == UINT32_MAX && !mmn_read_retry(s, seq), "gen 2^32 - 1 reads as usual");
	fs_kill(&fs);
	tap_is_int(dispatch_until_err(c), -ECONNRESET, "connection lost");
	dispatch_until(c, &rec.releases, 1);
	tap_is_u64(hello_base(&fs), 1ull << 32, "the next Hello asks for gens from 2^32");
	tap_is_int(rec.reason, -ERANGE, "no gen left: released with -ERANGE");
	tap_ok(mmn_read_retry(s, seq), "its value collides");
	tap_is_int(mmn_subscribe(c, 0, 0x20000, 0x1000, &o2, &s2), -ERANGE, "a new Subscribe: -ERANGE");
	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe the released sub");
	mmn_disconnect(c);
	fs_stop(&fs);
}

int main(void)
{
	struct fake_server fs;
	struct mmn_client *c;
	struct rec rec = {0}, rec2 = {0};
	struct mmn_sub_opts o = opts_for(&rec), o2 = opts_for(&rec2);
	struct mmn_sub *s, *s2;

	old_begin = (uint64_t(*)(struct mmn_sub *))dlsym(RTLD_DEFAULT, "mmn_read_begin");
	old_retry = (bool (*)(struct mmn_sub *, uint64_t))dlsym(RTLD_DEFAULT, "mmn_read_retry");
	tap_require(old_begin && old_retry);
	tap_require(fs_start(&fs) == 0);
	tap_require(mmn_connect(fs.path, &c) == 0);
	tap_require(mmn_subscribe(c, 0, 0x10000, 0x4000, &o, &s) == 0);
	test_quiescent(&fs, s, 0);
	test_reconnect(&fs, c, s, &rec);
	test_odd(&fs, c, s, 0, &rec);
	test_fork(&fs, s, 0);
	tap_require(mmn_subscribe(c, 0, 0x20000, 0x1000, &o2, &s2) == 0);
	test_gen(&fs, c, s2, (unsigned)fs_index(&fs, fs.next_sub_id), &rec2);
	tap_is_int(mmn_unsubscribe(s2), 0, "unsubscribe the released sub");
	tap_is_int(mmn_unsubscribe(s), 0, "unsubscribe");
	mmn_disconnect(c);
	fs_stop(&fs);
	test_old_mmnd();
	test_gens_exhausted();
	return tap_done();
}
