"""Helpers of the export / fleet tests: private namespaces with known sockets, `sockmon export` processes and
a real Prometheus server (Debian's `prometheus`, started on loopback with its own config and storage in a
temporary directory, ended by pid)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter

from sockmon.core.netns import run_in_netns

SS_STATE = {"ESTAB": "established", "TIME-WAIT": "time_wait", "LISTEN": "listen", "SYN-SENT": "syn_sent",
            "SYN-RECV": "syn_recv", "FIN-WAIT-1": "fin_wait1", "FIN-WAIT-2": "fin_wait2", "CLOSE-WAIT": "close_wait",
            "LAST-ACK": "last_ack", "CLOSING": "closing", "UNCONN": "close"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def private_netns(tag: str):
    """A fresh namespace ``prom-TAG-XXXX`` with lo up; deleted afterwards."""
    name = f"prom-{tag}-{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def ss_counts(netns: str) -> Counter:
    """Sockets per state (exporter names) as `ip netns exec NETNS ss -tan` lists them."""
    out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-tan"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    counts: Counter = Counter()
    for line in out.splitlines()[1:]:
        if line.split():
            counts[SS_STATE.get(line.split()[0], line.split()[0])] += 1
    return counts


class SocketSet:
    """Sockets made in ``netns`` by this process: listeners, established pairs, TIME_WAIT, queued connections.

    ``expected`` is what the namespace then holds, per state."""

    def __init__(self, netns: str, *, listeners: int, pairs: int, time_wait: int, queued: int = 0) -> None:
        self.netns = netns
        self.held: list[socket.socket] = []
        self.queued_port = None

        def make() -> socket.socket:
            s = socket.socket()
            self.held.append(s)
            return s

        def build() -> None:
            ls = []
            for _ in range(listeners):
                s = make()
                s.bind(("127.0.0.1", 0))
                s.listen(16)
                ls.append(s)
            main = ls[0]
            for _ in range(pairs + time_wait):
                c = make()
                c.connect(main.getsockname())
                a, _ = main.accept()
                self.held.append(a)
            if queued:
                q = make()  # a listener with backlog 1 and one connection nobody accepts: queue 1 of 1
                q.bind(("127.0.0.1", 0))
                q.listen(1)
                self.queued_port = q.getsockname()[1]
                for _ in range(queued):
                    c = make()
                    c.connect(q.getsockname())

        run_in_netns(netns, build)
        # TIME_WAIT: the client closes first, then the server (the client ends in TIME_WAIT, the server closed)
        conns = self.held[listeners:listeners + 2 * (pairs + time_wait)]
        for i in range(time_wait):
            cli, srv = conns[2 * (pairs + i)], conns[2 * (pairs + i) + 1]
            cli.close()
            srv.recv(1)  # the FIN arrived
            srv.close()
        self.held = [s for s in self.held if s.fileno() != -1]
        self.expected = +Counter({"listen": listeners + (1 if queued else 0), "established": 2 * pairs + 2 * queued,
                                 "time_wait": time_wait})

    def close(self) -> None:
        for s in self.held:
            s.close()


def start_export(*args: str) -> tuple[subprocess.Popen, int]:
    """`sockmon export --listen 127.0.0.1:0 ARGS` in the host namespace; (process, the port it serves on)."""
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "export", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    proc.wait()
    raise AssertionError(f"sockmon export did not start: {''.join(lines)}")


def stop_process(proc: subprocess.Popen, sig: int = 15, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"pid {proc.pid} did not exit within {timeout} s of signal {sig}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with _NO_PROXY.open(url, timeout=timeout) as resp:
        return resp.read()


class Prometheus:
    """A real Prometheus on 127.0.0.1 scraping ``targets`` every second (own config and storage)."""

    def __init__(self, targets: list[str], workdir: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = os.path.join(workdir, "prometheus.yml")
        with open(cfg, "w") as fh:
            fh.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n"
                     "scrape_configs:\n  - job_name: sockmon\n    static_configs:\n"
                     f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.log = open(os.path.join(workdir, "prometheus.log"), "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={cfg}",
             f"--storage.tsdb.path={os.path.join(workdir, 'data')}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        wait_until(self._ready, 60, "prometheus to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}")
        try:
            return http_get(f"{self.url}/-/ready", timeout=1).startswith(b"Prometheus")
        except OSError:
            return False

    def query(self, promql: str) -> list[dict]:
        body = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def stop(self) -> None:
        try:
            stop_process(self.proc, timeout=20)
        finally:
            self.log.close()
