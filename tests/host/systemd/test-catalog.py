#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""systemd/mmn.catalog: journalctl compiles it, and it has exactly one entry
per MESSAGE_ID that daemon/log.h defines, each with a Subject.  TAP.

    test-catalog.py CATALOG LOG-H
"""
import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../lib"))
from tap import done, diag, ok, scratch, skip_all  # noqa: E402

CATALOG, LOG_H = sys.argv[1:3]

with open(LOG_H) as f:
    ids = dict((m.group(2), m.group(1)) for m in
               re.finditer(r'#define (MMN_MSGID_\w+)\s+"([0-9a-f]*)"', f.read()))
with open(CATALOG) as f:
    entries = re.findall(r"^-- (\S+)$", f.read(), re.M)

ok(len(ids) >= 10 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids),
   f"log.h: {len(ids)} MESSAGE_IDs, each 128 bits in hex")
ok(len(set(ids)) == len(ids) and len(set(entries)) == len(entries), "no id twice")
ok(set(entries) == set(ids), f"one catalog entry per MESSAGE_ID (missing {set(ids) - set(entries)}, "
   f"extra {set(entries) - set(ids)})")

if shutil.which("journalctl") is None:
    diag("journalctl is not installed: the catalog is not compiled")
    done()
root = scratch("mmn-catalog-")
os.makedirs(os.path.join(root, "usr/lib/systemd/catalog"))
shutil.copy(CATALOG, os.path.join(root, "usr/lib/systemd/catalog/mmn.catalog"))
p = subprocess.run(["journalctl", f"--root={root}", "--update-catalog"], capture_output=True, text=True)
ok(p.returncode == 0 and not p.stderr.strip(), f"journalctl --update-catalog accepts it ({p.stderr.strip()})")
p = subprocess.run(["journalctl", f"--root={root}", "--list-catalog"], capture_output=True, text=True)
listed = dict(line.split(" ", 1) for line in p.stdout.splitlines() if line)
ok(p.returncode == 0 and set(listed) == set(ids), f"--list-catalog lists every id ({p.stderr.strip()})")
ok(all(v.startswith("mmn: ") and len(v) > 10 for v in listed.values()), "each entry has a Subject, defined by mmn")
done()
