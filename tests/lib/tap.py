# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the Python TAP tests (the counterpart of tests/tap.h and
tests/lib/mmnd-run.sh): the TAP stream, a scratch directory whose child
processes are killed at cleanup, and line reads with a timeout.

    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../lib"))
    from tap import ok, diag, skip_all, done, scratch, procs, cleanup, readline

Single-threaded use; the module's state is the test's.
"""
import os
import select
import shutil
import subprocess
import sys
import tempfile

TIMEOUT = 20  # seconds; only ever reached when something is broken

n = 0
failed = 0
procs = []  # subprocess.Popen objects, killed (last first) by cleanup()
_scratch = []
_lines = {}


def ok(cond, desc):
    """One TAP line (multi-line descriptions joined); returns cond."""
    global n, failed
    n += 1
    if not cond:
        failed += 1
    desc = " / ".join(str(desc).splitlines())
    print(f"{'' if cond else 'not '}ok {n} - {desc}", flush=True)
    return cond


def diag(msg):
    for line in str(msg).splitlines():
        print(f"# {line}", flush=True)


def skip_all(why):
    # meson (1.0) counts a TAP test exiting 77 as an error: exit 0.
    print(f"1..0 # SKIP {why}")
    sys.exit(0)


def bail(msg):
    print(f"Bail out! {msg}", flush=True)
    cleanup()
    sys.exit(1)


def done():
    """The plan, then exit 1 when a test failed."""
    cleanup()
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


def scratch(prefix):
    """A new temporary directory (mode 0755: other uids reach its sockets)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    _scratch.append(d)
    return d


def cleanup():
    """Kills the processes in procs and removes the scratch directories."""
    for p in reversed(procs):
        if p.poll() is None:
            p.kill()
            p.wait()
    for d in _scratch:
        shutil.rmtree(d, ignore_errors=True)


class Lines:
    """Lines from a pipe without Python's buffering, so select() tells the truth."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def readline(self, timeout=TIMEOUT):
        """One line without its newline; None on EOF or when nothing comes in time."""
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.fd], [], [], timeout)
            if not r:
                return None
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def readline(f, timeout=TIMEOUT):
    """The next line of a file or descriptor; every read of it must come here."""
    key = f if isinstance(f, int) else f.fileno()
    if key not in _lines:
        _lines[key] = Lines(key)
    return _lines[key].readline(timeout)


def dbus_daemon(conf):
    """Starts dbus-daemon with config file @conf (in procs); its address, or None."""
    r, w = os.pipe()
    procs.append(subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={conf}",
                                   f"--print-address={w}"], pass_fds=[w], stderr=subprocess.DEVNULL))
    os.close(w)
    address = Lines(r).readline()
    os.close(r)
    return address
