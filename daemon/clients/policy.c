/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Policy: request validation, limits, deadlines and authorisation.
 *
 * A client may always watch itself.  It may watch another process when it
 * could ptrace it (CAP_SYS_PTRACE, or the same real/effective/saved uid and
 * gid and the target is dumpable: the kernel's ptrace_may_access() rule) or
 * when the target, over its own connection, created a share token for that
 * range and the client's uid.  The target is pinned by a pidfd opened
 * before its credentials are read; the pidfd is checked to still name a
 * living process afterwards, so a recycled pid cannot slip in between.
 */

#include "clients/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "clients/share.h"
#include "engine/pidfd.h"
#include "engine/sub.h"

#define CAP_SYS_PTRACE_BIT    19

int mmn__policy_check_subscribe(const struct broker *b, const Mmn__V1__Subscribe *s, struct sub_req *out,
				const char **msg)
{
	uint32_t timeout;

	if (s->flags != MMN__V1__SUB_FLAG__SUB_BLOCKING && s->flags != MMN__V1__SUB_FLAG__SUB_NONBLOCKING) {
		*msg = "flags must be exactly one of BLOCKING and NONBLOCKING";
		return -EINVAL;
	}
	if (s->pid < 0) {
		*msg = "bad pid";
		return -EINVAL;
	}
	if (s->length == 0) {
		*msg = "empty range";
		return -EINVAL;
	}
	if (s->start >= MMN_TASK_SIZE || s->length > MMN_TASK_SIZE - s->start) {
		*msg = "range beyond the user address space";
		return -EOVERFLOW;
	}
	if (s->event_mask & ~MMN_EVENT_MASK_ALL) {
		*msg = "unknown event type in event_mask";
		return -EINVAL;
	}
	if (s->share_token.len != 0 && s->share_token.len != 16) {
		*msg = "bad share token";
		return -EINVAL;
	}
	timeout = s->ack_timeout_ms ? s->ack_timeout_ms : b->opt.ack_timeout_ms;
	if (timeout > b->opt.ack_cap_ms)
		timeout = b->opt.ack_cap_ms;
	out->pid = s->pid;
	out->start = s->start;
	out->end = s->start + s->length;
	out->flags = s->flags;
	out->mask = s->event_mask ? s->event_mask : MMN_EVENT_MASK_ALL;
	out->timeout_ms = timeout;
	out->no_end = s->no_end;
	return 0;
}

int mmn__policy_may_watch(const struct peer_creds *peer, const struct target_creds *t)
{
	if (peer->cap_sys_ptrace)
		return 0;
	for (int i = 0; i < 3; i++)
		if (t->uid[i] != peer->uid || t->gid[i] != peer->gid)
			return -EPERM;
	return t->dumpable ? 0 : -EPERM;
}

static int read_status(pid_t pid, const char *key, char *val, size_t cap)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	FILE *f;
	int r = -ENOENT;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			snprintf(val, cap, "%s", line + klen + 1);
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}

int mmn__policy_read_target(pid_t pid, struct target_creds *out)
{
	char val[128], path[64];
	unsigned u[4], g[4];
	struct stat st;
	int r;

	r = read_status(pid, "Uid", val, sizeof(val));
	if (r < 0)
		return r;
	if (sscanf(val, "%u %u %u %u", &u[0], &u[1], &u[2], &u[3]) != 4)
		return -EIO;
	r = read_status(pid, "Gid", val, sizeof(val));
	if (r < 0)
		return r;
	if (sscanf(val, "%u %u %u %u", &g[0], &g[1], &g[2], &g[3]) != 4)
		return -EIO;
	for (int i = 0; i < 4; i++) {
		out->uid[i] = u[i];
		out->gid[i] = g[i];
	}
	/* /proc/PID entries of a non-dumpable process belong to root (task_dump_owner). */
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (stat(path, &st) < 0)
		return -ESRCH;
	out->dumpable = st.st_uid == out->uid[1];
	return 0;
}

bool mmn__policy_peer_has_ptrace(pid_t pid)
{
	char val[128];
	unsigned long long caps;

	if (read_status(pid, "CapEff", val, sizeof(val)) < 0)
		return false;
	if (sscanf(val, "%llx", &caps) != 1)
		return false;
	return caps & (1ULL << CAP_SYS_PTRACE_BIT);
}

int mmn__policy_authorize(struct broker *b, struct client *c, pid_t pid, int pidfd, const struct sub_req *r,
			  const ProtobufCBinaryData *token)
{
	struct peer_creds peer = {.pid = c->pid, .uid = c->uid, .gid = c->gid};
	struct target_creds tc;
	int err;

	if (token && token->len == 16 && mmn__share_check(b, c, pid, r, token) == 0)
		return 0;
	peer.cap_sys_ptrace = mmn__policy_peer_has_ptrace(c->pid);
	if (!peer.cap_sys_ptrace) {
		err = mmn__policy_read_target(pid, &tc);
		if (err < 0)
			return err;
		/* The pidfd was opened first: still alive means the pid was not recycled. */
		if (!mmn__pidfd_alive(pidfd, pid))
			return -ESRCH;
		err = mmn__policy_may_watch(&peer, &tc);
		if (err < 0)
			return err;
	}
	return mmn__pidfd_alive(pidfd, pid) ? 0 : -ESRCH;
}

int mmn__policy_uid_may_subscribe(const struct client *c, uint32_t queued, const char **msg)
{
	if (!c->limited || c->acct->nsubs + (uint64_t)queued < c->b->opt.max_subs_per_uid)
		return 0;
	*msg = "too many subscriptions for this uid (max-subs-per-uid)";
	return -EDQUOT;
}
