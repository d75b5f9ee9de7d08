"""TransitionTracer: exact transitions from sock:inet_sock_set_state in a private tracefs instance."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from sockmon.core.table import tracepoint
from sockmon.core.table.tracepoint import (
    TransitionTracer,
    cleanup_stale_instances,
    list_instances,
    parse_line,
    tracing_available,
)

OK, WHY = tracing_available()
needs_tracing = pytest.mark.skipif(not OK, reason=f"tracepoint unavailable: {WHY}")

LINE = ("         python3-9296    [001] ..s2.   536.440246: inet_sock_set_state: family=AF_INET "
        "protocol=IPPROTO_TCP sport=58664 dport=35815 saddr=127.0.0.1 daddr=127.0.0.2 "
        "saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.2 oldstate=TCP_SYN_SENT newstate=TCP_ESTABLISHED")
LINE6 = ("  <idle>-0 [000] b..1.  12.000001: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP "
         "sport=1 dport=2 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=fe80::2 oldstate=TCP_LAST_ACK "
         "newstate=TCP_CLOSE")


def test_parse_line():
    assert parse_line(LINE) == (536.440246, 2, "127.0.0.1", 58664, "127.0.0.2", 35815, 2, 1)
    assert parse_line(LINE6) == (12.000001, 10, "::1", 1, "fe80::2", 2, 9, 7)
    assert parse_line("# tracer: nop") is None
    assert parse_line(LINE.replace("TCP_ESTABLISHED", "TCP_BOGUS")) is None
    assert parse_line(LINE[:-40]) is None


def one_connection(port_holder: list) -> tuple[int, int]:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lst.accept()
    time.sleep(0.02)
    cport = cli.getsockname()[1]
    cli.close()
    srv.close()
    lst.close()
    port_holder.append(port)
    return port, cport


@needs_tracing
def test_one_connection_gives_its_ten_transitions_with_dwell_and_mono_clock():
    before = time.monotonic()
    with TransitionTracer() as tr:
        assert os.path.isdir(tr.path) and tr.name.startswith(f"sockmon-{os.getpid()}-")
        with open(os.path.join(tr.path, "trace_clock")) as fh:
            assert "[mono]" in fh.read()
        ports: list = []
        port, cport = one_connection(ports)
        time.sleep(0.05)
        got = [t for t in tr.read() if port in (t.sport, t.dport)]
        assert tr.overruns == 0
    after = time.monotonic()
    assert not os.path.exists(tr.path)
    pairs = [(t.old_name, t.new_name) for t in got if t.dport != 0 or t.old_name == "CLOSE" and t.new_name == "SYN_SENT"]
    expected = {("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
                ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE"), ("LISTEN", "SYN_RECV"),
                ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"), ("CLOSE_WAIT", "LAST_ACK"),
                ("LAST_ACK", "CLOSE")}
    assert sorted(pairs) == sorted(expected)  # exactly once each
    assert all(t.source == "tracepoint" and before <= t.ts <= after for t in got)
    est = next(t for t in got if t.sport == cport and t.old_name == "ESTABLISHED")
    assert 15 <= est.dwell_ms < 1000  # slept 20 ms in ESTABLISHED
    syn = next(t for t in got if t.old_name == "SYN_SENT")
    assert syn.dwell_ms is not None and syn.dwell_ms < 50  # found though SYN_SENT was entered with sport 0
    assert next(t for t in got if t.old_name == "LISTEN" and t.dport).dwell_ms is None


@needs_tracing
def test_port_filter_in_the_kernel():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    with TransitionTracer(port=port) as tr:
        one_connection([])  # other port
        cli = socket.create_connection(("127.0.0.1", port))
        srv, _ = lst.accept()
        time.sleep(0.02)
        got = tr.read()
        cli.close()
        srv.close()
    lst.close()
    assert got and all(port in (t.sport, t.dport) or (t.sport == 0 and t.dport == port) for t in got)


@needs_tracing
def test_instance_removed_on_exception():
    with pytest.raises(RuntimeError):
        with TransitionTracer() as tr:
            raise RuntimeError("boom")
    assert not os.path.exists(tr.path)
    tr.close()  # idempotent


@needs_tracing
def test_stale_instance_of_a_killed_run_is_cleaned_up():
    code = ("from sockmon.core.table.tracepoint import TransitionTracer\nimport time\n"
            "t=TransitionTracer()\nprint(t.name,flush=True)\ntime.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    name = proc.stdout.readline().strip()
    assert name in list_instances()
    assert name not in cleanup_stale_instances()  # its pid is alive: left alone
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert name in list_instances()
    assert name in cleanup_stale_instances()
    assert name not in list_instances()


@needs_tracing
def test_atexit_removes_the_instance():
    code = ("from sockmon.core.table.tracepoint import TransitionTracer\n"
            "t=TransitionTracer()\nprint(t.name,flush=True)\n")
    name = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert name.startswith("sockmon-") and name not in list_instances()


def test_not_root_is_reported(monkeypatch):
    monkeypatch.setattr(tracepoint.os, "geteuid", lambda: 1000)
    ok, why = tracing_available()
    assert not ok and "root" in why
    with pytest.raises(tracepoint.TracingUnavailable):
        TransitionTracer()


# -- a backlog is read in bounded batches ------------------------------------------------------------

def _burst(lst: socket.socket, n: int) -> set[int]:
    """n loopback connections opened and closed on ``lst`` (10 transitions each); their client ports."""
    addr = lst.getsockname()
    ports = set()
    for _ in range(n):
        c = socket.create_connection(addr)
        s, _ = lst.accept()
        ports.add(c.getsockname()[1])
        c.close()
        s.close()
    return ports


@needs_tracing
def test_a_backlog_is_drained_in_bounded_batches_and_nothing_is_lost():
    """3,000 connections (30,000 transitions, ~6 MB of text) wait in the kernel while nobody reads;
    draining hands them out in batches of at most BATCH_BYTES of text, and every one arrives."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    port = lst.getsockname()[1]
    with TransitionTracer(port=port) as tr:
        clients = _burst(lst, 3000)
        time.sleep(0.2)
        sizes = []
        per_port: dict[int, int] = {}
        connects = 0
        for batch in tr.batches():
            sizes.append(len(batch))
            assert tr.batch_bytes_max <= tracepoint.BATCH_BYTES
            for t in batch:
                if t.dport == port and not t.sport:  # CLOSE -> SYN_SENT comes before the port is picked
                    connects += 1
                elif t.dport == port:
                    per_port[t.sport] = per_port.get(t.sport, 0) + 1
                elif t.sport == port and t.dport:
                    per_port[t.dport] = per_port.get(t.dport, 0) + 1
        assert tr.overruns == 0
    lst.close()
    assert len(sizes) > 10 and max(sizes) < 2000  # many small batches, not one 30,000-record list
    assert set(per_port) >= clients
    # per connection: the client's 4 after SYN_SENT + the server side's 5 (+ the SYN_SENT counted above)
    missing = {p: n for p, n in per_port.items() if p in clients and n != 9}
    assert not missing and connects == 3000, f"{len(missing)} connections without their 10 transitions"


@needs_tracing
def test_the_dwell_table_is_capped_when_closes_are_never_seen(monkeypatch):
    """Sockets whose CLOSE is lost (overrun) or filtered stay in the dwell table: it keeps at most MAX_OPEN,
    evicting the oldest, however many arrive."""
    monkeypatch.setattr(tracepoint, "MAX_OPEN", 1000)
    with TransitionTracer(port=1) as tr:
        for chunk in range(10):
            lines = [LINE.replace("sport=58664", f"sport={1 + chunk * 500 + i}") for i in range(500)]
            assert len(tr._parse(lines)) == 500
            assert len(tr._last) <= 1000
        newest = (socket.AF_INET, "127.0.0.1", 1 + 9 * 500 + 499, "127.0.0.2", 35815)
        assert newest in tr._last and (socket.AF_INET, "127.0.0.1", 1, "127.0.0.2", 35815) not in tr._last
