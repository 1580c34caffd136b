#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""systemd/org.mmn.Broker1.conf in a private dbus-daemon configured like
Debian's system bus (deny by default), in front of fake-broker: root owns
the name and calls anything; a member of the reading group reads, is
refused changes; anyone else may only introspect; only root may own the
name.  The policy's group "mmn" is replaced by "nogroup" (nobody's own
group in the user database, which is what the bus consults), and
fake-broker accepts gid 65534 for reads.  TAP; needs root.

    test-dbus-policy.py FAKE-BROKER POLICY MMNCTL
"""
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../lib"))
from tap import TIMEOUT, bail, dbus_daemon, done, ok, procs, readline, scratch, skip_all  # noqa: E402

FAKE, POLICY, MMNCTL = sys.argv[1:4]
NOBODY, NOGROUP = 65534, 65534
DAEMON_UID, DAEMON_GID = 1, 1  # Debian's "daemon": in neither group

if os.geteuid() != 0:
    skip_all("needs root to run callers as other uids")
if shutil.which("dbus-daemon") is None or shutil.which("busctl") is None:
    skip_all("dbus-daemon or busctl is not installed")
try:
    import grp
    import pwd
    if grp.getgrgid(NOGROUP).gr_name != "nogroup" or pwd.getpwuid(NOBODY).pw_gid != NOGROUP:
        skip_all("no nobody:nogroup")
    pwd.getpwuid(DAEMON_UID)
except KeyError:
    skip_all("no nobody, nogroup or daemon user")

tmp = scratch("mmn-policy-")

with open(POLICY) as f:
    policy = f.read().replace('group="mmn"', 'group="nogroup"')
with open(os.path.join(tmp, "org.mmn.Broker1.conf"), "w") as f:
    f.write(policy)
# Debian's system.conf defaults, minus what a private bus cannot do.
with open(os.path.join(tmp, "bus.conf"), "w") as f:
    f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={tmp}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{tmp}/org.mmn.Broker1.conf</include>
</busconfig>
""")

address = dbus_daemon(f"{tmp}/bus.conf")
if not address:
    bail("dbus-daemon did not start")


def start_fake(uid=None):
    def drop():
        os.setgroups([])
        os.setresgid(NOGROUP, NOGROUP, NOGROUP)
        os.setresuid(uid, uid, uid)
    env = dict(os.environ, MMN_ADMIN_GROUP=str(NOGROUP))
    p = subprocess.Popen([FAKE, address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env, preexec_fn=drop if uid is not None else None)
    procs.append(p)
    return p, readline(p.stdout.fileno())


def as_user(uid, gid, groups):
    def fn():
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    return fn


def busctl(who, *args):
    p = subprocess.run(["busctl", f"--address={address}", *args], capture_output=True, text=True,
                       preexec_fn=who, timeout=TIMEOUT)
    return p.returncode, p.stdout + p.stderr


def call(who, method, sig=None, *args):
    extra = [sig, *args] if sig else []
    return busctl(who, "call", "org.mmn.Broker1", "/org/mmn/Broker1", "org.mmn.Broker1.Manager", method, *extra)


member = as_user(NOBODY, NOGROUP, [NOGROUP])
other = as_user(DAEMON_UID, DAEMON_GID, [DAEMON_GID])
root = None

fake, line = start_fake()
ok(line == "READY", "root owns org.mmn.Broker1")
_, line = start_fake(uid=NOBODY)
ok(line != "READY", "nobody may not own org.mmn.Broker1")

rc, out = call(root, "GetStats")
ok(rc == 0, "root: GetStats")
def mmnctl(who, *args):
    p = subprocess.run([MMNCTL, f"--bus={address}", "--no-pager", *args], capture_output=True, text=True,
                       preexec_fn=who, timeout=TIMEOUT)
    return p.returncode, p.stdout + p.stderr


# mmnctl prints the error's message: the bus's own says "Rejected send
# message", mmnd's names the rule in the code.
rc, out = mmnctl(root, "evict", "99")
ok(rc == 1 and "No client with id 99" in out, "root: EvictClient reaches mmnd (NoSuchClient)")

rc, out = call(member, "ListClients")
ok(rc == 0, "group member: ListClients")
rc, out = call(member, "ListSubscriptions", "tu", "0", "0")
ok(rc == 0, "group member: ListSubscriptions")
rc, out = call(member, "GetStats")
ok(rc == 0, "group member: GetStats")
rc, out = call(member, "GetClientHistograms")
ok(rc == 0, f"group member: GetClientHistograms ({out.strip()})")
rc, out = mmnctl(member, "stats", "--format=openmetrics")
ok(rc == 0 and out.endswith("# EOF\n"), "group member: mmnctl stats --format=openmetrics")
rc, out = busctl(member, "get-property", "org.mmn.Broker1", "/org/mmn/Broker1", "org.mmn.Broker1.Manager",
                 "Source")
ok(rc == 0 and "test" in out, "group member: Get Source")
for args in (["evict", "1"], ["set-default", "max-clients=1"], ["reload"]):
    rc, out = mmnctl(member, *args)
    ok(rc == 1 and "Rejected send message" in out, f"group member: mmnctl {args[0]} rejected by the bus")

rc, out = mmnctl(other, "clients")
ok(rc == 1 and "permission denied" in out and "Rejected send message" in out,
   "other user: ListClients rejected by the bus, mmnctl says permission denied")
rc, out = call(other, "GetClientHistograms")
ok(rc != 0, "other user: GetClientHistograms rejected")
rc, out = busctl(other, "get-property", "org.mmn.Broker1", "/org/mmn/Broker1", "org.mmn.Broker1.Manager",
                 "Source")
ok(rc != 0, "other user: properties rejected")
rc, out = busctl(other, "introspect", "--xml-interface", "org.mmn.Broker1", "/org/mmn/Broker1")
ok(rc == 0 and "org.mmn.Broker1.Manager" in out, "other user: Introspect allowed")

fake.stdin.write(b"quit\n")
fake.stdin.flush()
ok(fake.wait(timeout=TIMEOUT) == 0, "fake-broker exits cleanly")
done()
