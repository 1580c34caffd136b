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
#include "broker-internal.h"

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

#define CAP_SYS_PTRACE_BIT    19
#define MAX_SHARES_PER_CLIENT 64

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

static int share_check(struct broker *b, struct client *c, pid_t pid, const struct sub_req *r,
		       const ProtobufCBinaryData *token)
{
	list_for_each(pos, &b->clients)
	{
		struct client *o = list_entry(pos, struct client, link);

		if (o->pid != pid)
			continue;
		list_for_each(sp, &o->shares)
		{
			struct share *sh = list_entry(sp, struct share, link);

			if (memcmp(sh->token, token->data, sizeof(sh->token)) != 0)
				continue;
			if (sh->peer_uid != c->uid)
				return -EPERM;
			if (r && (r->start < sh->start || r->end > sh->end))
				return -EPERM;
			return 0;
		}
	}
	return -EPERM;
}

int mmn__policy_authorize(struct broker *b, struct client *c, pid_t pid, int pidfd, const struct sub_req *r,
			  const ProtobufCBinaryData *token)
{
	struct peer_creds peer = {.pid = c->pid, .uid = c->uid, .gid = c->gid};
	struct target_creds tc;
	int err;

	if (token && token->len == 16 && share_check(b, c, pid, r, token) == 0)
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

int mmn__share_create(struct client *c, const Mmn__V1__Share *s, uint8_t token[16])
{
	struct share *sh;
	unsigned n = 0;

	if (s->length == 0 || s->start >= MMN_TASK_SIZE || s->length > MMN_TASK_SIZE - s->start)
		return -EINVAL;
	list_for_each(pos, &c->shares) n++;
	if (n >= MAX_SHARES_PER_CLIENT)
		return -ENOSPC;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	if (getrandom(sh->token, sizeof(sh->token), 0) != (ssize_t)sizeof(sh->token)) {
		free(sh);
		return -EIO;
	}
	sh->start = s->start;
	sh->end = s->start + s->length;
	sh->peer_uid = s->peer_uid;
	list_add_tail(&c->shares, &sh->link);
	memcpy(token, sh->token, sizeof(sh->token));
	return 0;
}

void mmn__share_free_all(struct client *c)
{
	while (!list_empty(&c->shares)) {
		struct share *sh = list_entry(c->shares.next, struct share, link);

		list_del(&sh->link);
		free(sh);
	}
}
