"""Closed-connection history (core/table/closed.py, `sockmon ls --closed`): real loopback connections
closed gracefully (FIN) and by SO_LINGER 0 (RST), with known bytes each way and a known lifetime, through
a real Collector (tracepoint as root, and inferred) and through the command; a timeout through a dead
veth peer; the 5,000 cap under real churn."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from sockhelp_closed import CLIENT_SENDS, LIFETIME, SERVER_SENDS, one_connection
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.states import CLOSE, ESTABLISHED, FIN_WAIT1, SYN_SENT
from sockmon.core.table.closed import MAX_CLOSED, ClosedHistory
from sockmon.core.table.collector import Collector, Update
from sockmon.core.table.tracepoint import list_instances, tracing_available

pytestmark = pytest.mark.timeout(120)
OK, WHY = tracing_available()
SOCKMON = [sys.executable, "-m", "sockmon"]
TOLERANCE = 0.3  # seconds


@pytest.fixture
def listener():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    yield lst
    lst.close()


def both_ends(conn):
    """(4-tuple of the end, bytes it received, bytes it sent) for the client and the server end."""
    return [((*conn.client, *conn.server), SERVER_SENDS, CLIENT_SENDS),
            ((*conn.server, *conn.client), CLIENT_SENDS, SERVER_SENDS)]


def record_with(listener, *, use_tracepoint: bool, interval: float = 0.2):
    port = listener.getsockname()[1]
    model = ClosedHistory()
    with Collector(interval=interval, port=port, use_tracepoint=use_tracepoint, on_update=model.feed) as col:
        assert col.transition_source == ("tracepoint" if use_tracepoint else "inferred")
        time.sleep(2 * interval)
        done = [one_connection(listener, how) for how in ("FIN", "RST")]
        time.sleep(3 * interval)
    model.flush()
    return model, done


@pytest.mark.skipif(not OK, reason=WHY)
def test_collector_with_tracepoint_records_fin_and_rst_with_lifetime_bytes_and_owner(listener):
    model, done = record_with(listener, use_tracepoint=True)
    by_tuple = {c.four_tuple: c for c in model.records()}
    assert len(by_tuple) == 4, model.records()
    for conn in done:
        for tup, received, sent in both_ends(conn):
            c = by_tuple[tup]
            assert c.ended == conn.how, c
            assert c.source == "tracepoint"
            assert c.birth_seen
            assert abs(c.lifetime_s - LIFETIME) <= TOLERANCE, c.lifetime_s
            assert (c.bytes_received, c.bytes_sent) == (received, sent)
            assert c.owner is not None and c.owner.pid == os.getpid()
            assert abs((c.closed_wall - c.opened_wall) - c.lifetime_s) < 1e-3
            # time in each state: ESTABLISHED for (almost) the whole lifetime
            est = [s.seconds for s in c.states if s.state == ESTABLISHED]
            assert est and abs(est[0] - LIFETIME) <= TOLERANCE
    fin_client = by_tuple[both_ends(done[0])[0][0]]
    assert [s.state_name for s in fin_client.states] == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"]
    assert fin_client.state_name == "FIN_WAIT2"
    fin_server = by_tuple[both_ends(done[0])[1][0]]
    assert [s.state_name for s in fin_server.states] == ["SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK"]
    rst_client = by_tuple[both_ends(done[1])[0][0]]
    assert rst_client.state_name == "ESTABLISHED"  # jumped to CLOSE from ESTABLISHED
    assert rst_client.bytes_acked == CLIENT_SENDS + 1  # the kernel's bytes_acked counts the SYN


def test_collector_inferred_records_lifetime_bytes_and_says_what_it_cannot_see(listener):
    model, done = record_with(listener, use_tracepoint=False)
    by_tuple = {c.four_tuple: c for c in model.records()}
    assert len(by_tuple) == 4, model.records()
    for conn in done:
        for tup, received, sent in both_ends(conn):
            c = by_tuple[tup]
            assert c.source == "inferred"
            assert abs(c.lifetime_s - LIFETIME) <= TOLERANCE + 0.2  # ± the refresh interval
            assert (c.bytes_received, c.bytes_sent) == (received, sent)
            assert c.owner is not None and c.owner.pid == os.getpid()
    fin_client = by_tuple[both_ends(done[0])[0][0]]
    assert fin_client.ended == "FIN"  # it became a TIME_WAIT socket: a FIN close
    rst_client = by_tuple[both_ends(done[1])[0][0]]
    assert rst_client.ended == "unknown"  # between two snapshots: an RST and a FIN look alike


def _closed_cmd(port: int, *extra: str) -> subprocess.Popen:
    """The command, once it records (it says so on stderr)."""
    proc = subprocess.Popen([*SOCKMON, "ls", "--closed", "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "recording for" not in (line := proc.stderr.readline()):
        assert line, "the command ended before recording"
    return proc


@pytest.mark.skipif(not OK, reason=WHY)
def test_ls_closed_json_for_2_records_the_connections_made_meanwhile(listener):
    port = listener.getsockname()[1]
    proc = _closed_cmd(port, "--json", "--for", "2")
    t0 = time.monotonic()
    done = [one_connection(listener, how, lifetime=0.5) for how in ("FIN", "RST")]
    assert time.monotonic() - t0 < 1.5, "the connections must fit in the recording"
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    by_tuple = {(r["src"], r["sport"], r["dst"], r["dport"]): r for r in records}
    assert len(by_tuple) == 4, out
    for conn in done:
        for tup, received, sent in both_ends(conn):
            r = by_tuple[tup]
            assert r["ended"] == conn.how
            assert abs(r["lifetime_s"] - 0.5) <= TOLERANCE
            assert (r["bytes_received"], r["bytes_sent"]) == (received, sent)
            assert r["pid"] is not None and r["birth_seen"] is True and r["source"] == "tracepoint"
            assert r["closed"].endswith("Z") and r["opened"] < r["closed"]
            assert r["states"][-1]["state"] == r["final_state"]
    assert not any(i.startswith(f"sockmon-{proc.pid}-") for i in list_instances()), "its tracefs instance is removed"


def test_ls_closed_text_and_signals_end_the_recording_cleanly(listener):
    port = listener.getsockname()[1]
    proc = _closed_cmd(port, "--for", "60")
    one_connection(listener, "RST", lifetime=0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - t0 < 5
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["Closed", "Ended", "Final"]
    assert sum(1 for line in lines if f":{port} " in line + " ") == 2


@pytest.mark.parametrize("value", ["0", "-1", "nan", "100000"])
def test_ls_closed_refuses_a_bad_duration_in_one_line(value):
    r = subprocess.run([*SOCKMON, "ls", "--closed", "--for", value], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and "--for must be between" in r.stderr


@pytest.mark.skipif(not OK, reason=WHY)
def test_history_keeps_the_last_5000_of_more_closes_under_real_churn(listener):
    """3,000 real connections (6,000 closed ends) through a real Collector: the cap, oldest evicted first."""
    port = listener.getsockname()[1]
    model = ClosedHistory()
    n = 3_000
    lost = [0]

    def feed(update):
        lost[0] = max(lost[0], update.overruns) + update.dropped_transitions
        model.feed(update)

    with Collector(interval=0.2, port=port, on_update=feed):
        time.sleep(0.3)
        last = None
        for _ in range(n):
            cli = socket.create_connection(("127.0.0.1", port))
            srv, _ = listener.accept()
            last = cli.getsockname()[1]
            cli.close()
            srv.close()
        time.sleep(0.8)
    model.flush()
    if not lost[0]:  # (a loaded machine may make the kernel drop events: then only the cap is checked)
        assert model.total == 2 * n
    assert model.total > MAX_CLOSED
    assert len(model) == MAX_CLOSED
    recs = model.records()
    assert len(recs) == MAX_CLOSED
    assert [c.seq for c in recs] == sorted((c.seq for c in recs), reverse=True), "newest first"
    assert recs[0].seq == model.total and recs[-1].seq == model.total - MAX_CLOSED + 1
    assert any(last in (c.sport, c.dport) for c in recs[:4]), "the newest connection is kept"
    assert len(model._waiting) == 0 and len(model._departed) == 0
    assert len(model._owners) <= model.max_owners


def _sock(sport: int, state: int = ESTABLISHED, cookie: int = 0, inode: int = 0) -> Socket:
    return Socket(socket.AF_INET, state, "127.0.0.1", sport, "127.0.0.1", 80, 0, 0, None, 0, inode,
                  cookie or sport)


def test_every_waiting_structure_is_bounded_under_churn():
    """Closes that never meet a removal, removals that never meet a close, owners of orphans: capped."""
    model = ClosedHistory(cap=100, max_waiting=50, max_owners=40)
    from sockmon.core.records import Process

    snaps = []
    for i in range(300):  # a churn of sockets that appear, lose their owner, and vanish
        socks = tuple(_sock(10_000 + j, FIN_WAIT1 if j < i else ESTABLISHED, inode=0 if j < i else 5)
                      for j in range(i, i + 60))
        snaps.append(Snapshot(socks, float(i), 1e9 + i, "netlink", owners={5: Process(1, "p", "u")}))
    for i, snap in enumerate(snaps):
        d = None
        model.observe(Update(snap, d, (), None, 0.0, 0, "tracepoint", base_taken_at=None))
        # closes far in the future: they wait for a removal that never comes
        model.add_transitions([Transition(1e6 + i, socket.AF_INET, "127.0.0.2", 20_000 + i, "127.0.0.1", 80,
                                          ESTABLISHED, CLOSE, "tracepoint")], source="tracepoint")
        assert len(model._waiting) <= 50 and len(model._departed) <= 50 and len(model._owners) <= 40
        assert len(model) <= 100
    assert model.total > 100  # evicted waiting closes were recorded (without snapshot data), then the cap
    model.flush()
    assert not model._waiting and not model._departed


def test_how_a_connection_ended_from_the_states_and_the_last_sample():
    """connect failed (SYN_SENT -> CLOSE); a jump while the last sample retransmitted: RST or timeout."""
    from sockmon.core.records import Timer

    model = ClosedHistory()
    s0 = Snapshot((_sock(1, SYN_SENT),
                   Socket(socket.AF_INET, ESTABLISHED, "127.0.0.1", 2, "127.0.0.1", 80, 0, 9, Timer(1, 200, 3), 0,
                          0, 2)), 1.0, 1e9, "netlink")
    s1 = Snapshot((), 2.0, 1e9 + 1, "netlink")
    model.observe(Update(s0, None, (), None, 0.0, 0, "tracepoint"))
    model.observe(Update(s1, None, (), None, 0.0, 0, "tracepoint", base_taken_at=None))
    model.add_transitions([
        Transition(1.5, socket.AF_INET, "127.0.0.1", 1, "127.0.0.1", 80, SYN_SENT, CLOSE, "tracepoint"),
        Transition(1.6, socket.AF_INET, "127.0.0.1", 2, "127.0.0.1", 80, ESTABLISHED, CLOSE, "tracepoint"),
    ], source="tracepoint", upto=2.0)
    ended = {c.sport: c.ended for c in model.records()}
    assert ended == {1: "connect failed", 2: "RST or timeout"}
    assert all(not c.birth_seen and c.lifetime_s is None and c.opened_wall is None for c in model.records())


@pytest.mark.slow
@pytest.mark.skipif(not OK or not shutil.which("ip"), reason=WHY or "needs iproute2")
def test_a_timeout_through_a_dead_peer_is_not_called_a_plain_rst():
    """The peer vanishes (veth down); TCP_USER_TIMEOUT ends the connection after retransmissions: the
    tracepoint shows ESTABLISHED -> CLOSE as for an RST, the last sample shows the retransmissions."""
    from sockhelp import veth_netns_pair
    from sockmon.core.netns import run_in_netns

    with veth_netns_pair("closed", "10.214.0") as (a, b, vb):
        lst = run_in_netns(b, lambda: socket.create_server(("10.214.0.2", 0)))
        port = lst.getsockname()[1]
        model = ClosedHistory()
        with Collector(interval=0.2, netns=a, port=port, use_tracepoint=True, on_update=model.feed):
            cli = run_in_netns(a, lambda: socket.create_connection(("10.214.0.2", port), timeout=5))
            srv, _ = lst.accept()
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1500)
            time.sleep(0.4)
            subprocess.run(["ip", "-n", b, "link", "set", vb, "down"], check=True, timeout=10)
            cli.send(b"x" * 100)
            t = threading.Event()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not t.is_set():
                if any(c.sport == cli.getsockname()[1] for c in model.records()):
                    t.set()
                time.sleep(0.1)
            cli.close()
            srv.close()
            lst.close()
        model.flush()
    mine = [c for c in model.records() if c.src == "10.214.0.1" and c.dport == port]
    assert len(mine) == 1, model.records()
    assert mine[0].ended == "RST or timeout", mine[0]
    assert mine[0].state_name == "ESTABLISHED"


def test_watch_closed_prints_each_connection_as_it_ends_and_stops_on_sigint(listener):
    port = listener.getsockname()[1]
    proc = subprocess.Popen([*SOCKMON, "watch", "--closed", "--json", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "recording until" not in (line := proc.stderr.readline()):
        assert line, "the command ended before recording"
    conn = one_connection(listener, "RST", lifetime=0.3)
    first = json.loads(proc.stdout.readline())  # printed while it runs, not at the end
    assert first["ended"] == "RST" and port in (first["sport"], first["dport"])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    out = proc.stdout.read()  # (not communicate(): it would miss what readline() buffered)
    got = [first, *(json.loads(x) for x in out.splitlines())]
    assert {(r["src"], r["sport"], r["dst"], r["dport"]) for r in got} == {t for t, _, _ in both_ends(conn)}, got


def test_a_record_says_when_its_bytes_were_read_with_the_event_driven_table():
    """An event-driven table's row off screen keeps the numbers of an earlier reading (Snapshot.read_at /
    read_base): a connection that ends then records that reading's wall time, not the snapshot's."""
    from sockmon.core.records import Process

    sock = _sock(40_000, ESTABLISHED, inode=5)
    owners = {5: Process(1, "p", "u")}
    base = Snapshot((sock,), 100.0, 1e9 + 100, "netlink", owners=owners)
    # 5 s later, its numbers still those of the full dump at 100.0 (read_base); another row read now
    held = Snapshot((sock,), 105.0, 1e9 + 105, "netlink", owners=owners, read_at={}, read_base=100.0)
    gone = Snapshot((), 106.0, 1e9 + 106, "netlink", read_at={}, read_base=100.0)
    model = ClosedHistory()
    model.feed(Update(base, None, (), None, 0.0, 0, "tracepoint"))
    model.feed(Update(held, None, (), None, 0.0, 0, "tracepoint"))
    close = Transition(105.5, socket.AF_INET, sock.src, sock.sport, sock.dst, sock.dport, ESTABLISHED, CLOSE,
                       "tracepoint")
    model.feed(Update(gone, None, (close,), None, 0.0, 0, "tracepoint"))
    model.flush()
    rec = model.records()[-1]
    assert rec.four_tuple == (sock.src, sock.sport, sock.dst, sock.dport)
    assert rec.seen_wall == pytest.approx(1e9 + 100)  # read at the full dump, not at 1e9 + 105
    # read afresh at 104.5 (on screen): that time
    model = ClosedHistory()
    fresh = Snapshot((sock,), 105.0, 1e9 + 105, "netlink", owners=owners, read_at={sock.cookie: 104.5},
                     read_base=100.0)
    for u in (Update(base, None, (), None, 0.0, 0, "tracepoint"), Update(fresh, None, (), None, 0.0, 0, "tracepoint"),
              Update(gone, None, (close,), None, 0.0, 0, "tracepoint")):
        model.feed(u)
    model.flush()
    assert model.records()[-1].seen_wall == pytest.approx(1e9 + 104.5)
