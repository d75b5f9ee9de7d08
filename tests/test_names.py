"""Host and service names (core/names.py, `ls -r`): /etc/services parsed once, reverse lookups in a
background thread that never blocks the caller, a bounded LRU with TTL, failures cached.

Only loopback addresses and names in /etc/hosts: no DNS query leaves this host."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from sockmon.core.names import HostNames, Names, ServiceNames, default_resolve, parse_services

pytestmark = pytest.mark.timeout(60)


def hosts_has_localhost() -> bool:
    try:
        with open("/etc/hosts") as fh:
            return any(line.split()[:2] == ["127.0.0.1", "localhost"] for line in fh if line.strip())
    except OSError:
        return False


def wait_until(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_services_parsed_once_first_name_wins_and_bounded(tmp_path):
    text = "# comment\nssh 22/tcp\nfoo 22/tcp # a later alias: ignored\nbar 53/udp dns\nbad x/tcp\n" \
           "big 70000/tcp\n  \nredis\t6379/tcp\n"
    assert parse_services(text) == {(22, "tcp"): "ssh", (53, "udp"): "bar", (6379, "tcp"): "redis"}
    assert len(parse_services("\n".join(f"s{i} {i}/tcp" for i in range(1, 1000)), limit=10)) == 10
    f = tmp_path / "services"
    f.write_text(text)
    svc = ServiceNames(str(f))
    assert svc.name(22) == "ssh" and svc.name(53, "udp") == "bar" and svc.name(53) is None
    f.write_text("other 22/tcp\n")  # read once: a later change is not seen
    assert svc.name(22) == "ssh"
    assert ServiceNames(str(tmp_path / "missing")).name(22) is None
    system = ServiceNames()
    for port, proto in ((22, "tcp"), (53, "udp"), (6379, "tcp")):
        try:
            expected = socket.getservbyport(port, proto)  # files only (nsswitch "services: files")
        except OSError:
            continue
        assert system.name(port, proto) == expected


def test_lookup_never_blocks_on_a_slow_resolver_and_calls_back():
    release = threading.Event()
    calls = []

    def slow(addr: str):
        calls.append(addr)
        release.wait(10)
        return "slow.example"

    arrived = threading.Event()
    hosts = HostNames(slow, on_resolved=lambda a, n: arrived.set())
    try:
        t0 = time.perf_counter()
        for _ in range(50):
            assert hosts.lookup("127.0.0.9") is None  # unknown yet: the number is shown
        assert time.perf_counter() - t0 < 0.5  # never waited for the resolver (it sleeps 10 s)
        assert wait_until(lambda: calls == ["127.0.0.9"])  # asked once, however many lookups
        assert hosts.pending() == 0
        release.set()
        assert arrived.wait(5)
        assert hosts.lookup("127.0.0.9") == "slow.example"
        assert hosts.lookup("0.0.0.0") is None and hosts.lookup("::") is None  # never looked up
        assert calls == ["127.0.0.9"]
    finally:
        release.set()
        hosts.close()


def test_failures_are_cached_lru_is_bounded_and_entries_expire():
    now = [1000.0]
    calls = []

    def resolve(addr: str):
        calls.append(addr)
        if addr.endswith(".13"):
            raise OSError("boom")
        return None if addr.endswith(".7") else f"h{addr}"

    hosts = HostNames(resolve, max_entries=16, ttl=300, fail_ttl=60, clock=lambda: now[0])
    try:
        for _ in range(3):
            assert hosts.resolve_now("127.0.0.7") is None
            assert hosts.resolve_now("127.0.0.13") is None
        assert calls == ["127.0.0.7", "127.0.0.13"]  # failures cached: asked once each
        now[0] += 61  # the failure TTL passed: asked again
        hosts.resolve_now("127.0.0.7")
        assert calls[-1] == "127.0.0.7" and len(calls) == 3
        # churn through many addresses: the cache stays within its bound, oldest first out
        for i in range(500):
            hosts.resolve_now(f"127.1.{i // 250}.{i % 250}")
        assert len(hosts) == 16
        assert hosts.cached("127.1.1.249") == (True, "h127.1.1.249")
        assert hosts.cached("127.1.0.0") == (False, None)
        now[0] += 301
        assert hosts.cached("127.1.1.249") == (False, None)  # a name expires too
    finally:
        hosts.close()


def test_pending_queue_is_bounded_oldest_dropped():
    release = threading.Event()
    hosts = HostNames(lambda a: release.wait(10) and None, max_pending=8)
    try:
        hosts.lookup("127.0.0.1")
        assert wait_until(lambda: hosts.pending() == 0)  # the thread holds it, blocked
        for i in range(100):
            hosts.lookup(f"127.2.0.{i}")
        assert hosts.pending() == 8 and hosts.dropped == 92
    finally:
        release.set()
        hosts.close()


@pytest.mark.skipif(not hosts_has_localhost(), reason="/etc/hosts does not name 127.0.0.1 localhost")
def test_getnameinfo_names_loopback_from_etc_hosts():
    assert default_resolve("127.0.0.1") == "localhost"
    names = Names(blocking=True)
    assert names.endpoint("127.0.0.1", 22) == f"localhost:{ServiceNames().name(22) or 22}"
    assert names.endpoint("0.0.0.0", 0) == "0.0.0.0:*"


def free_service_port() -> tuple[socket.socket, int, str]:
    """A TCP listener on 127.0.0.1 at a port /etc/services names (the first one free here)."""
    svc = ServiceNames()
    for port in (6379, 5432, 3306, 8080, 11211, 2049, 9418, 873, 631, 443, 80, 25, 21):
        name = svc.name(port, "tcp")
        if not name:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.listen(1)
        return s, port, name
    pytest.skip("no well-known port free on 127.0.0.1")


@pytest.mark.skipif(not hosts_has_localhost(), reason="/etc/hosts does not name 127.0.0.1 localhost")
def test_ls_r_shows_localhost_and_the_service_name():
    lst, port, service = free_service_port()
    try:
        numeric = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--port", str(port)],
                                 capture_output=True, text=True, timeout=30)
        assert f"127.0.0.1:{port}" in numeric.stdout and "localhost" not in numeric.stdout  # numeric by default
        r = subprocess.run([sys.executable, "-m", "sockmon", "ls", "-r", "--port", str(port)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if "LISTEN" in x)
        assert f"localhost:{service}" in line, r.stdout
    finally:
        lst.close()


def test_a_hostile_name_is_shown_inert_and_cut():
    import time as _time

    from sockmon.core.records import Snapshot, Socket

    from sockmon.cli.ls import format_table

    evil = "\x1b]0;pwned\x07\x1b[31mred" + "x" * 400
    names = Names(HostNames(lambda addr: evil), blocking=True)
    sock = Socket(socket.AF_INET, 10, "127.0.0.1", 22, "0.0.0.0", 0, 0, 128, None, 0, 0, 1)
    snap = Snapshot(sockets=(sock,), taken_at=_time.monotonic(), wall_time=_time.time(), source="netlink")
    out = "\n".join(format_table(snap, names))
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned" in out
    assert names.hosts.resolve_now("127.0.0.1") == evil[:253]  # a DNS name is at most 253 characters
