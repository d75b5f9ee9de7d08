"""core/netns.py: all_netns() finds named namespaces and those only processes hold (root)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from sockmon.core.netns import all_netns, run_in_netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating namespaces needs root")


def test_named_and_process_only_namespaces_are_listed_once_each():
    name = f"smtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    child = subprocess.Popen(["unshare", "-n", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while True:
            refs = all_netns()
            by_ident = {r.ident: r for r in refs}
            ref = by_ident.get(f"pid:{child.pid}")
            # unshare enters the namespace, then execs sleep: wait for the exec, not just the namespace
            if (ref is not None and "sleep" in ref.label) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert refs[0].current, "our own namespace comes first"
        assert sum(r.current for r in refs) == 1
        named = by_ident[name]
        assert named.name == name and named.inode == os.stat(f"/run/netns/{name}").st_ino
        unnamed = by_ident[f"pid:{child.pid}"]
        assert unnamed.inode == os.stat(f"/proc/{child.pid}/ns/net").st_ino
        assert "sleep" in unnamed.label
        assert len({r.inode for r in refs}) == len(refs), "one entry per namespace"
        # every ident is usable: entering the child's namespace shows its inode
        seen = run_in_netns(unnamed.target, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
        assert seen == unnamed.inode
        assert refs[0].target is None and named.target == name
    finally:
        child.kill()
        child.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False)
    assert all(r.ident != name for r in all_netns())
