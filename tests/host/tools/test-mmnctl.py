#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mmnctl against a real mmnd on a private dbus-daemon, with real libmmn
clients connected: every verb, --json output parsed and compared with what
the clients know about themselves, exit codes and messages (not running,
permission denied, usage, module absent), monitor signals, eviction reaching
the client.  TAP.

    test-mmnctl.py MMND MMNCTL TEST-CLIENT
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../lib"))
from tap import TIMEOUT, Lines, bail, dbus_daemon, diag, done, ok, procs, readline, scratch, skip_all  # noqa: E402

MMND, MMNCTL, CLIENT = sys.argv[1:4]
ADMIN_GID = 4242
NOBODY = 65534

def wait_line(f, pred, timeout=TIMEOUT):
    """Lines until one satisfies pred; returns it, or None."""
    seen = []
    while True:
        line = readline(f, timeout)
        if line is None:
            diag(f"waited for a line; saw {seen}")
            return None
        seen.append(line)
        if pred(line):
            return line


tmp = scratch("mmn-ctl-")


def start_bus():
    conf = os.path.join(tmp, "bus.conf")
    with open(conf, "w") as f:
        f.write(f"""<busconfig><type>session</type>
<listen>unix:path={tmp}/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
""")
    return dbus_daemon(conf)


def start_mmnd(source):
    r, w = os.pipe()
    env = dict(os.environ, MMN_ADMIN_GROUP=str(ADMIN_GID))
    env.pop("NOTIFY_SOCKET", None)
    p = subprocess.Popen([MMND, f"--source={source}", f"--socket={SOCK}", f"--bus={ADDRESS}",
                          f"--ready-fd={w}", "--log-level=info"],
                         pass_fds=[w], env=env, stderr=open(os.path.join(tmp, f"mmnd-{source}.log"), "w"))
    procs.append(p)
    os.close(w)
    line = Lines(r).readline()
    os.close(r)
    if line != "READY=1":
        p.kill()
        p.wait()
        with open(os.path.join(tmp, f"mmnd-{source}.log")) as log:
            diag(log.read())
        return None
    return p


def drop_privileges(in_group):
    def fn():
        os.setgroups([ADMIN_GID] if in_group else [])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    return fn


def mmnctl(*args, as_nobody=None):
    pre = drop_privileges(as_nobody) if as_nobody is not None else None
    p = subprocess.run([MMNCTL, f"--bus={ADDRESS}", "--no-pager", *args], capture_output=True, text=True,
                       preexec_fn=pre, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def mmnctl_json(*args, as_nobody=None):
    rc, out, err = mmnctl("--json=short", *args, as_nobody=as_nobody)
    if rc != 0:
        diag(f"mmnctl {' '.join(args)}: rc {rc}: {err}")
        return None
    try:
        return json.loads(out)
    except ValueError as e:
        diag(f"mmnctl {' '.join(args)}: not JSON ({e}): {out!r}")
        return None


SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m or m.group(1) in labels:
            raise ValueError(f"bad labels {text!r}")
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_openmetrics(text):
    """Check an OpenMetrics exposition; returns (samples [(name, labels, value)], {family: type})."""
    lines = text.split("\n")
    if lines[-1] != "" or lines[-2] != "# EOF" or "# EOF" in lines[:-2]:
        raise ValueError("does not end with one '# EOF' line")
    types, samples, seen = {}, [], []
    for line in lines[:-2]:
        if line.startswith("#"):
            kw, name, rest = (line.split(" ", 3) + [""])[1:4]
            if kw not in ("TYPE", "HELP", "UNIT") or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                raise ValueError(f"bad metadata line {line!r}")
            if kw == "TYPE":
                if name in types or rest not in ("counter", "gauge", "histogram", "unknown"):
                    raise ValueError(f"bad TYPE {line!r}")
                types[name] = rest
                seen.append(name)
            continue
        m = SAMPLE.fullmatch(line)
        if not m:
            raise ValueError(f"bad sample line {line!r}")
        name, labels, value = m.group(1), parse_labels(m.group(2) or ""), float(m.group(3))
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)
        if not seen or seen[-1] not in (name, family):
            raise ValueError(f"sample {name} outside its family (last TYPE {seen[-1:]})")
        if types[seen[-1]] == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter sample {name} without _total")
        samples.append((name, labels, value))
    return samples, types


def openmetrics():
    rc, out, err = mmnctl("--format=openmetrics", "stats")
    if rc != 0:
        diag(f"stats --format=openmetrics: rc {rc}: {err}")
        return None
    try:
        return parse_openmetrics(out)
    except ValueError as e:
        diag(f"stats --format=openmetrics: {e}:\n{out}")
        return None


def hist_count(samples, pid):
    """pid's ack count, after checking its buckets are cumulative and end at +Inf == _count."""
    mine = [(n, lb, v) for n, lb, v in samples if lb.get("pid") == str(pid)]
    buckets = [(lb["le"], v) for n, lb, v in mine if n == "mmn_ack_latency_seconds_bucket"]
    count = [v for n, lb, v in mine if n == "mmn_ack_latency_seconds_count"]
    if not buckets or buckets[-1][0] != "+Inf" or len(count) != 1 or buckets[-1][1] != count[0] \
            or any(a[1] > b[1] for a, b in zip(buckets, buckets[1:])) \
            or not [v for n, lb, v in mine if n == "mmn_deadline_misses_total"]:
        diag(f"pid {pid}: bad histogram {mine}")
        return None
    return int(count[0])


def start_client(mode, pages):
    p = subprocess.Popen([CLIENT, SOCK, mode, str(pages)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    procs.append(p)
    line = readline(p.stdout)
    if not line or not line.startswith("READY "):
        bail(f"test-client {mode} did not start: {line}")
    _, pid, start, end = line.split()
    return p, int(pid), int(start, 16), int(end, 16)


if shutil.which("dbus-daemon") is None:
    skip_all("dbus-daemon is not installed")

ADDRESS = start_bus()
if not ADDRESS:
    bail("dbus-daemon did not start")
SOCK = os.path.join(tmp, "mmnd.sock")

# Before mmnd exists.
rc, out, err = mmnctl("status")
ok(rc == 1 and "mmnd is not running" in err, f"no mmnd: exit 1, 'mmnd is not running' ({rc}: {err.strip()})")
rc, out, err = mmnctl("frobnicate")
ok(rc == 2 and "unknown command" in err, "unknown verb: exit 2")
ok(mmnctl("evict")[0] == 2, "evict without an id: exit 2")
ok(mmnctl("--json=loud", "status")[0] == 2, "bad --json mode: exit 2")
ok(mmnctl("--json=short", "evict", "3")[0] == 2, "--json on a change: exit 2")
ok(mmnctl("--client=4", "status")[0] == 2, "--client outside subscriptions: exit 2")
ok(mmnctl("set-default", "nonsense")[0] == 2, "set-default without KEY=VALUE: exit 2")
rc, out, err = mmnctl("--version")
ok(rc == 0 and out.startswith("mmnctl "), "--version")

# The userfaultfd source is what runs without mmn.ko; real unmaps feed it.
source = "uffd"
mmnd = start_mmnd("uffd")
if mmnd is None:
    diag("mmnd --source=uffd did not start here; using the test source (no real invalidations)")
    source = "test"
    mmnd = start_mmnd("test")
if mmnd is None:
    bail("mmnd did not start")

st = mmnctl_json("status")
ok(st is not None and st["source"] == source, f"status --json: source {source}")
mmnd_version = subprocess.run([MMND, "--version"], capture_output=True, text=True).stdout.split()
ok(st is not None and len(mmnd_version) > 1 and st["version"] == mmnd_version[1],
   f"status --json: version {st and st['version']} is mmnd's ({' '.join(mmnd_version)})")
if source == "uffd":
    ok(st["acks_hold_kernel"] is False, "uffd: acks_hold_kernel false")
    rc, out, err = mmnctl("status")
    ok(rc == 0 and "mmn.ko is not loaded" in out, "status says the module is absent")
ok(st is not None and st["clients"] == 0 and st["subscriptions"] == 0, "status: no clients yet")

monitor = subprocess.Popen([MMNCTL, f"--bus={ADDRESS}", "monitor"], stdout=subprocess.PIPE)
procs.append(monitor)
ok(wait_line(monitor.stdout, lambda l: l.startswith("Monitoring org.mmn.Broker1")) is not None,
   "monitor subscribed")

a, pid_a, start_a, end_a = start_client("blocking", 4)
b, pid_b, start_b, end_b = start_client("nonblocking", 2)


def connected_id(pid):
    line = wait_line(monitor.stdout, lambda l: l.startswith("client ") and f"connected: pid {pid} " in l)
    return int(line.split()[1]) if line else None


id_a = connected_id(pid_a)
id_b = connected_id(pid_b)
ok(id_a is not None and id_b is not None and id_a != id_b, f"monitor: ClientConnected for both ({id_a}, {id_b})")

clients = mmnctl_json("clients")
ok(isinstance(clients, list) and len(clients) == 2, "clients --json: two clients")
by_pid = {c["pid"]: c for c in clients or []}
keys = {"id", "pid", "uid", "name", "mode", "subscriptions", "pending_acks", "evictions"}
ok(all(set(c) == keys for c in clients or []), "clients --json: the documented keys")
ca, cb = by_pid.get(pid_a, {}), by_pid.get(pid_b, {})
ok(ca.get("id") == id_a and cb.get("id") == id_b, "clients --json: ids match the signals")
ok(ca.get("uid") == os.getuid() and ca.get("subscriptions") == 1 and cb.get("subscriptions") == 1,
   "clients --json: uid and one subscription each")
ok(ca.get("mode") == "blocking" and cb.get("mode") == "nonblocking",
   f"clients --json: modes ({ca.get('mode')}, {cb.get('mode')})")
ok(ca.get("name") == "libmmn", f"clients --json: name from Hello ({ca.get('name')})")

subs = mmnctl_json("subscriptions")
ok(isinstance(subs, list) and len(subs) == 2, "subscriptions --json: two")
sa = [s for s in subs or [] if s["client_id"] == id_a]
sb = [s for s in subs or [] if s["client_id"] == id_b]
ok(len(sa) == 1 and sa[0]["pid"] == pid_a and sa[0]["start"] == start_a and sa[0]["end"] == end_a
   and sa[0]["mode"] == "blocking", "subscriptions --json: client A's range, pid, mode")
ok(len(sb) == 1 and sb[0]["pid"] == pid_b and sb[0]["start"] == start_b and sb[0]["end"] == end_b
   and sb[0]["mode"] == "nonblocking", "subscriptions --json: client B's range, pid, mode")
one = mmnctl_json("subscriptions", f"--client={id_a}")
ok(one is not None and [s["client_id"] for s in one] == [id_a], "subscriptions --client")
one = mmnctl_json("subscriptions", "--pid", str(pid_b))
ok(one is not None and [s["pid"] for s in one] == [pid_b], "subscriptions --pid")

st = mmnctl_json("status")
ok(st is not None and st["clients"] == 2 and st["subscriptions"] == 2, "status --json: 2 clients, 2 subscriptions")
stats = mmnctl_json("stats")
counters = {"clients", "subscriptions", "kernel_subscriptions", "invalidations", "blocking_acks", "timeouts",
            "evictions", "non_blockable_refusals", "queue_overflows", "protocol_errors", "implied_ends",
            "end_timeouts"}
ok(stats is not None and set(stats) == counters | {"client_ack_latency"},
   "stats --json: the twelve counters and client_ack_latency")
ok(stats is not None and stats["clients"] == 2, "stats --json: clients")
ok(stats is not None and sorted(c["pid"] for c in stats["client_ack_latency"]) == sorted([pid_a, pid_b])
   and all(c["acks"] == 0 and c["deadline_misses"] == 0 for c in stats["client_ack_latency"]),
   "stats --json: both clients, no acks, no misses yet")
om = openmetrics()
ok(om is not None and om[1].get("mmn_clients") == "gauge" and om[1].get("mmn_ack_latency_seconds") == "histogram",
   "stats --format=openmetrics: well formed, with the gauges and the histogram family")
ok(om is not None and hist_count(om[0], pid_a) == 0 and hist_count(om[0], pid_b) == 0,
   "stats --format=openmetrics: both clients' histograms, empty")
ok(mmnctl("--format=openmetrics", "status")[0] == 2, "--format outside stats: exit 2")
ok(mmnctl("--format=openmetrics", "--json=short", "stats")[0] == 2, "--format with --json: exit 2")
ok(mmnctl("--format=xml", "stats")[0] == 2, "unknown --format: exit 2")
rc, out, err = mmnctl("stats")
ok(rc == 0 and "P50" in out and f" {pid_a} " in out, "stats: the per-client table")

rc, out, err = mmnctl("--no-legend", "clients")
ok(rc == 0 and len(out.splitlines()) == 2 and "PID" not in out, "clients --no-legend: two bare lines")
rc, out, err = mmnctl("clients")
ok(rc == 0 and out.startswith("ID") and "2 clients listed." in out, "clients: header and footer")
rc, out, err = mmnctl("--json=pretty", "clients")
ok(rc == 0 and json.loads(out) == clients and "\n  " in out, "--json=pretty: the same document, indented")

if source == "uffd":
    a.stdin.write(b"unmap 1 1\n")
    a.stdin.flush()
    page = os.sysconf("SC_PAGESIZE")
    want = f"INVALIDATE {start_a + page:x} {start_a + 2 * page:x}"
    ok(wait_line(a.stdout, lambda l: l.startswith("INVALIDATE")) == want, f"client A saw its unmap ({want})")
    line = wait_line(monitor.stdout, lambda l: l.startswith("invalidation"))
    ok(line is not None and f"pid {pid_a} " in line and f"0x{start_a + page:x}-0x{start_a + 2 * page:x}" in line,
       f"monitor: InvalidationSampled ({line})")
    stats = mmnctl_json("stats")
    ok(stats is not None and stats["invalidations"] >= 1, "stats: invalidations counted")
    # The signal comes once every recipient settled: an ack A owed is counted by now.  The
    # userfaultfd source's events ask no ack (acks do not hold the kernel): A's count is the
    # BlockingAcks counter, 0 here, 1 under mmn.ko (daemon-engine-fanout-latency counts acks).
    om = openmetrics()
    ok(om is not None and hist_count(om[0], pid_a) == stats["blocking_acks"],
       f"openmetrics: client A's histogram counts its blocking acks ({stats['blocking_acks']})")
    ok(om is not None and hist_count(om[0], pid_b) == 0, "openmetrics: client B acked nothing")

# Defaults.
rc, out, err = mmnctl("set-default", "ack-timeout-ms=250", "max-queued=64")
ok(rc == 0, f"set-default as root ({err.strip()})")
st = mmnctl_json("status")
ok(st is not None and st["default_ack_timeout_msec"] == 250 and st["max_queued_events"] == 64,
   "status shows the new defaults")
rc, out, err = mmnctl("set-default", f"ack-timeout-ms={10**6}")
ok(rc == 1 and "range" in err, f"set-default out of range: exit 1 ({err.strip()})")
ok(mmnctl("set-default", "bogus=1")[0] == 2, "set-default unknown key: exit 2")
rc, out, err = mmnctl("set-default", f"max-queued={2**30}")
ok(rc == 1 and "MaxQueuedEvents" in err and "1048576" in err,
   f"set-default max-queued=2^30: refused naming the key and its range ({err.strip()})")
st = mmnctl_json("status")
ok(st is not None and st["max_queued_events"] == 64, "a refused max-queued changes nothing")
ok(st is not None and st.get("max_clients_per_uid") == 128 and st.get("hello_timeout_msec") == 5000,
   "status shows the per-uid limits and the Hello timeout")
rc, out, err = mmnctl("set-default", "max-clients-per-uid=16", "hello-timeout-ms=2000")
st = mmnctl_json("status")
ok(rc == 0 and st is not None and st["max_clients_per_uid"] == 16 and st["hello_timeout_msec"] == 2000,
   f"set-default max-clients-per-uid and hello-timeout-ms ({err.strip()})")

# Another uid.
if os.geteuid() == 0:
    rc, out, err = mmnctl("clients", as_nobody=False)
    ok(rc == 1 and "permission denied" in err, f"nobody outside the group: permission denied ({err.strip()})")
    got = mmnctl_json("clients", as_nobody=True)
    ok(got is not None and len(got) == 2, "nobody in the admin group: clients --json")
    rc, out, err = mmnctl("evict", str(id_b), as_nobody=True)
    ok(rc == 1 and "permission denied" in err, "nobody in the admin group: evict refused")
    rc, out, err = mmnctl("set-default", "max-clients=1", as_nobody=True)
    ok(rc == 1 and "permission denied" in err, "nobody in the admin group: set-default refused")
else:
    diag("not root: other-uid checks not run")

# Eviction reaches the client.
rc, out, err = mmnctl("evict", str(id_b))
ok(rc == 0, f"evict {id_b} ({err.strip()})")
ok(wait_line(b.stdout, lambda l: l.startswith("RELEASED")) == "RELEASED 2", "client B told: released, admin")
ok(wait_line(monitor.stdout, lambda l: l.startswith(f"client {id_b} evicted")) is not None, "monitor: ClientEvicted")
rc, out, err = mmnctl("evict", "999999")
ok(rc == 1 and "999999" in err, f"evict an unknown id: exit 1 ({err.strip()})")

a.stdin.write(b"quit\n")
a.stdin.flush()
ok(wait_line(monitor.stdout, lambda l: l == f"client {id_a} disconnected") is not None,
   "monitor: ClientDisconnected when A quits")
a.wait()
clients = mmnctl_json("clients")
ok(clients is not None and id_a not in [c["id"] for c in clients], "clients: A is gone")

mmnd.send_signal(signal.SIGTERM)
ok(mmnd.wait(timeout=TIMEOUT) == 0, "mmnd exits 0 on SIGTERM")
rc, out, err = mmnctl("status")
ok(rc == 1 and "mmnd is not running" in err, "after mmnd stopped: not running")
monitor.send_signal(signal.SIGINT)
ok(monitor.wait(timeout=TIMEOUT) == 0, "monitor ends on SIGINT, exit 0")

done()
