"""Test namespaces with a loopback listener in each (root): ``ip netns add``, ``lo`` up, and a
``python -c`` listener started with ``ip netns exec``; removed (processes killed, namespaces deleted)
however the test ends."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

# listens on 127.0.0.1:PORT, says "ready", optionally connects to itself and keeps both ends, then waits
_CHILD = """
import socket, sys, time
port, connect = int(sys.argv[1]), sys.argv[2] == "1"
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", port))
lst.listen(8)
keep = []
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "connect":
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = lst.accept()
        keep += [c, a]
        print("connected %d" % c.getsockname()[1], flush=True)
    elif line.strip() == "close":
        for s in keep:
            s.close()
        keep = []
        print("closed", flush=True)
"""


@dataclass
class TestNamespace:
    name: str
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid  # `ip netns exec` execs the command: this is the listener's process

    def ask(self, command: str) -> str:
        """Have the child connect to its own listener ("connect": returns "connected SPORT") or close
        its connections ("close")."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def listening_namespaces(count: int = 1, port: int = 80, prefix: str = "netns-") -> Iterator[list[TestNamespace]]:
    """``count`` fresh namespaces, each with a listener on 127.0.0.1:``port`` (the same 4-tuple in each)."""
    tag = uuid.uuid4().hex[:8]
    made: list[str] = []
    spaces: list[TestNamespace] = []
    try:
        for i in range(count):
            name = f"{prefix}{tag}-{i}"
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
            proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", _CHILD, str(port), "0"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            spaces.append(TestNamespace(name, proc))
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield spaces
    finally:
        for ns in spaces:
            ns.proc.kill()
            ns.proc.wait()
            for f in (ns.proc.stdin, ns.proc.stdout):
                if f is not None:
                    f.close()
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
