/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Policy: request validation and authorisation (who may watch whom).
 */
#ifndef MMN_DAEMON_POLICY_H
#define MMN_DAEMON_POLICY_H

#include <stdbool.h>
#include <sys/types.h>

#include "mmn.pb-c.h"

struct broker;
struct client;
struct sub_req;

struct peer_creds {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool cap_sys_ptrace;
};
struct target_creds {
	uid_t uid[4]; /* real, effective, saved, fs */
	gid_t gid[4];
	bool dumpable;
};
/* Pure rule: 0 or -EPERM. */
int mmn__policy_may_watch(const struct peer_creds *peer, const struct target_creds *t);
/* Read the credentials from /proc; 0 or negative errno. */
int mmn__policy_read_target(pid_t pid, struct target_creds *out);
bool mmn__policy_peer_has_ptrace(pid_t pid);
/* Validate a Subscribe and compute the effective timeout.  0 or negative errno, *msg says why. */
int mmn__policy_check_subscribe(const struct broker *b, const Mmn__V1__Subscribe *s, struct sub_req *out,
				const char **msg);
/* Authorise @c to watch @pid (non-zero, not itself).  0 or -EPERM/-ESRCH/-EOPNOTSUPP. */
int mmn__policy_authorize(struct broker *b, struct client *c, pid_t pid, int pidfd, const struct sub_req *r,
			  const ProtobufCBinaryData *token);
/*
 * 0, or -EDQUOT when @c's uid holds its max_subs_per_uid subscriptions,
 * counting @queued more not yet accounted (earlier items of a batch; *msg says so).
 */
int mmn__policy_uid_may_subscribe(const struct client *c, uint32_t queued, const char **msg);

#endif
