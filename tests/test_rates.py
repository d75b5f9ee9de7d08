"""The throughput model (core/table/rates.py, core/series.py) on synthetic snapshots: first sighting,
steady rates, counter resets, gone sockets, sockets without tcp_info; totals per process; the sample
ring; the rate and sparkline formats. And the bound: the tracker holds the latest table only, under
real churn through the real collector."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import MappingProxyType

import pytest
from msgspec.structs import replace
from sockmon.core import states as S
from sockmon.core.records import Process, Snapshot, Socket
from sockmon.core.series import SAMPLES, ZERO, Rates, Sample, SampleRing, rate_text, sample_of
from sockmon.core.table.rates import RateTracker, process_totals, rates_between
from sockmon.core.tcpinfo import encode_tcp_info
from sockmon.tui.fmt import spark
from test_tui_fixtures import info

V4 = socket.AF_INET


def conn(cookie: int, received: int = 0, acked: int = 0, *, state=S.ESTABLISHED, inode=None, sport=None,
         tcp=True) -> Socket:
    tcp_info = encode_tcp_info(info(bytes_received=received, bytes_acked=acked)) if tcp else None
    return Socket(V4, state, "127.0.0.1", sport or 40000 + cookie, "127.0.0.1", 8080, 0, 0, None, 0,
                  cookie if inode is None else inode, cookie, 0, tcp_info)


def snap(t: float, *socks: Socket, owners=None, source="netlink") -> Snapshot:
    return Snapshot(tuple(socks), t, 0.0, source, owners=MappingProxyType(owners or {}))


def test_first_sighting_has_no_rate_then_the_counter_deltas_over_the_time_between_snapshots():
    tr = RateTracker()
    first = tr.update(snap(10.0, conn(1, 1000, 500)))
    assert first.seconds is None and first.get(conn(1)) is None  # one dump: no rate, not 0
    r = tr.update(snap(10.5, conn(1, 6000, 3000), conn(2, 10**9, 10**9)))
    assert r.seconds == pytest.approx(0.5)
    assert r.get(conn(1)) == pytest.approx((10_000.0, 5_000.0))  # (6000-1000)/0.5, (3000-500)/0.5
    assert r.rx(conn(1)) == pytest.approx(10_000.0) and r.tx(conn(1)) == pytest.approx(5_000.0)
    assert r.get(conn(2)) is None  # new this tick: blank, whatever its counters
    r = tr.update(snap(11.5, conn(1, 6000, 3000), conn(2, 10**9 + 250, 10**9)))
    assert r.get(conn(1)) is ZERO  # idle: exactly 0, one shared value
    assert r.get(conn(2)) == pytest.approx((250.0, 0.0))


def test_counters_going_back_are_a_new_socket_under_the_key_and_gone_sockets_are_forgotten():
    tr = RateTracker()
    tr.update(snap(1.0, conn(1, 5000, 5000), conn(2, 100, 100)))
    r = tr.update(snap(2.0, conn(1, 10, 20), conn(2, 300, 100)))
    assert r.get(conn(1)) is None  # reset: no rate (never a negative one)
    assert r.get(conn(2)) == pytest.approx((200.0, 0.0))
    assert len(tr) == 2
    r = tr.update(snap(3.0, conn(1, 1010, 20)))  # 2 left the table
    assert r.get(conn(1)) == pytest.approx((1000.0, 0.0))  # the reset counters were the new baseline
    assert r.get(conn(2)) is None and len(tr) == 1  # dropped at once
    r = tr.update(snap(4.0, conn(2, 400, 100), conn(1, 1010, 20)))
    assert r.get(conn(2)) is None  # back after a gap: a first sighting again, no rate over the gap


def test_sockets_without_tcp_info_or_cookie_have_no_rate_and_the_same_snapshot_twice_gives_none():
    tr = RateTracker()
    tw = conn(3, state=S.TIME_WAIT, tcp=False)
    proc = replace(conn(4, 100, 100), cookie=0)  # /proc/net/tcp: no cookies (and no tcp_info in practice)
    tr.update(snap(1.0, conn(1, 0, 0), tw, proc))
    r = tr.update(snap(2.0, conn(1, 100, 0), tw, proc))
    assert r.get(tw) is None and r.get(proc) is None and r.get(conn(1)) == pytest.approx((100.0, 0.0))
    assert len(r) == 1
    again = tr.update(snap(2.0, conn(1, 100, 0)))
    assert again.seconds is None and again.get(conn(1)) is None  # no time between them: no rate


def test_tracker_is_bounded_by_the_table_under_synthetic_churn():
    tr = RateTracker()
    live = 500
    for tick in range(200):  # 500 sockets replaced by new ones every tick: 100,000 seen in all
        socks = [conn(tick * live + i + 1, tick, tick) for i in range(live)]
        r = tr.update(snap(float(tick), *socks))
        assert len(tr) == live and len(r.counters) == live
        assert len(r.fresh) == (live if tick else 0) and not r.moving


def test_rates_between_and_a_gone_row_asked_later():
    a = snap(1.0, conn(1, 0, 0))
    b = snap(3.0, conn(1, 4_000_000, 2_000_000))
    r = rates_between(a, b)
    assert r.get(conn(1)) == pytest.approx((2_000_000.0, 1_000_000.0))
    assert r.get(conn(9)) is None  # not in that snapshot (e.g. a row fading out of a table)


def test_process_totals_group_by_owner_with_states_and_summed_rates():
    nginx, curl = Process(42, "nginx", "www-data"), Process(7, "curl", "alice")
    owners = {101: nginx, 102: nginx, 103: nginx, 201: curl, 500: nginx}
    before = snap(1.0, conn(1, 0, 0, inode=101), conn(2, 0, 0, inode=102), conn(4, 0, 0, inode=201),
                  conn(5, state=S.TIME_WAIT, inode=0, tcp=False), owners=owners)
    after_socks = (
        conn(1, 2_000_000, 1_000, inode=101),  # nginx: 2 MB/s in
        conn(2, 0, 500_000, inode=102, state=S.CLOSE_WAIT),  # nginx: 0.5 MB/s out
        conn(3, 9_999, 9_999, inode=103),  # nginx: new, no rate yet
        conn(4, 1_000, 2_000_000, inode=201),  # curl
        conn(5, state=S.TIME_WAIT, inode=0, tcp=False),  # nobody's
        conn(6, 0, 0, inode=500, state=S.LISTEN),  # listeners are no connections
    )
    after = snap(2.0, *after_socks, owners=owners)
    rates = rates_between(before, after)
    totals = {t.pid: t for t in process_totals(after, rates)}
    assert set(totals) == {42, 7, 0}
    ng = totals[42]
    assert (ng.name, ng.user, ng.connections, ng.with_rate) == ("nginx", "www-data", 3, 2)
    assert dict(ng.states) == {"ESTABLISHED": 2, "CLOSE_WAIT": 1}
    assert ng.rx_bps == pytest.approx(2_000_000.0) and ng.tx_bps == pytest.approx(501_000.0)
    assert totals[7].rx_bps == pytest.approx(1_000.0) and totals[7].tx_bps == pytest.approx(2_000_000.0)
    nobody = totals[0]
    assert (nobody.name, nobody.connections, nobody.rx_bps, nobody.with_rate) == ("", 1, None, 0)
    assert dict(nobody.states) == {"TIME_WAIT": 1}
    assert [t.pid for t in process_totals(after, rates)] == [42, 7, 0]  # busiest first
    assert sum(t.connections for t in totals.values()) == 5  # every non-listener, once
    # without rates (one dump): counts only, rates unknown
    assert all(t.rx_bps is None for t in process_totals(after, None))


def test_sample_ring_is_bounded_and_keeps_one_sample_per_snapshot():
    ring = SampleRing()
    for i in range(5 * SAMPLES):
        ring.add(Sample(float(i), 100 + i, 10, 1.0 * i, 0.0, i // 7))
    assert len(ring) == SAMPLES and ring.latest.ts == 5 * SAMPLES - 1
    assert ring.series("rtt_us")[0] == 100 + 4 * SAMPLES  # oldest dropped first
    ring.add(Sample(float(5 * SAMPLES - 1), 1, 1, None, None, None))  # the same snapshot again: replaces
    ring.add(Sample(0.0, 2, 2, None, None, None))  # an older one: ignored
    assert len(ring) == SAMPLES and ring.latest.rtt_us == 1
    deltas = SampleRing(4)
    for ts, total in enumerate((3, 3, 5, None, 9, 2)):
        deltas.add(Sample(float(ts), None, None, None, None, total))
    assert deltas.retrans_deltas() == [None, None, None, 2]  # [5, None, 9, 2]: unknown, reset counts from 0


def test_sample_of_reads_rtt_cwnd_rates_and_retransmits():
    a, b = snap(1.0, conn(1, 0, 0)), snap(2.0, conn(1, 300, 100))
    sock = replace(b.sockets[0], tcp_info_bytes=encode_tcp_info(info(rtt_us=250, cwnd=33, total_retrans=4,
                                                                     bytes_received=300, bytes_acked=100)))
    s = sample_of(sock, rates_between(a, b), 2.0)
    assert (s.rtt_us, s.cwnd, s.rx_bps, s.tx_bps, s.total_retrans) == (250, 33, 300.0, 100.0, 4)
    tw = sample_of(conn(1, tcp=False, state=S.TIME_WAIT), None, 3.0)
    assert (tw.rtt_us, tw.cwnd, tw.rx_bps, tw.total_retrans) == (None, None, None, None)


@pytest.mark.parametrize("bps, text", [
    (None, ""), (0, "0 B/s"), (999, "999 B/s"), (1000, "1.00 kB/s"), (12_345, "12.3 kB/s"),
    (123_456, "123 kB/s"), (10_000_000, "10.0 MB/s"), (9_870_000, "9.87 MB/s"), (1.5e9, "1.50 GB/s"),
])
def test_rate_text_is_si(bps, text):
    assert rate_text(bps) == text


def test_spark_scales_from_zero_and_leaves_unknown_blank():
    assert spark([None, 0, 4, 8], 6) == "   ▁▅█"
    assert spark([5, 5, 5]) == "███"  # steady is flat at the top, not noise
    assert spark([1, 2], 0) == ""
    assert spark(range(100), 10) == spark(range(90, 100), 10)  # the newest only


def test_no_rates_is_blank_everywhere():
    empty = Rates(5.0, None)
    assert empty.get(conn(1)) is None and len(empty) == 0


# One child: a listener and as many connect + accept + RST-close cycles as it can make in SECONDS
CHURN = r"""
import socket, struct, sys, time
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(512)
addr = lst.getsockname(); linger = struct.pack("ii", 1, 0)
print(addr[1], flush=True)
held = []
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    c = socket.create_connection(addr); s, _ = lst.accept()
    held.append((c, s))
    if len(held) > 200:
        for x in held.pop(0):
            x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger); x.close()
"""


@pytest.mark.slow
def test_collector_rates_stay_bounded_by_the_live_table_under_real_churn():
    from sockmon.core.table.collector import Collector

    seen: list[tuple[int, int, int]] = []
    col = Collector(interval=0.05, use_tracepoint=False, with_owners=False, start=False,
                    on_update=lambda u: None)
    child = subprocess.Popen([sys.executable, "-c", CHURN, "3"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        cookies: set[int] = set()
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            u = col.collect_once()
            assert u.error is None
            mine = [s for s in u.snapshot.sockets if port in (s.sport, s.dport)]
            cookies.update(s.cookie for s in mine)
            with_info = sum(1 for s in u.snapshot.sockets if s.tcp_info_bytes is not None and s.cookie)
            seen.append((len(col._rates), with_info, len(u.rates)))
            time.sleep(0.02)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        col.stop()
    assert len(cookies) > 2000, f"the churn went through the table ({len(cookies)} sockets seen)"
    assert all(kept == live == held for kept, live, held in seen)  # the latest table, no more


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_ls_rates_wait_ends_cleanly_on_a_signal(sig):
    import signal

    p = subprocess.Popen([sys.executable, "-m", "sockmon", "ls", "--json", "--rates", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the first dump is taken; now it waits
    t0 = time.monotonic()
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0 and time.monotonic() - t0 < 5
    assert out == "" and "interrupted before the second dump" in err


def test_ls_rates_refuses_bad_seconds():
    for bad in ("0", "-1", "nan", "x", "4000"):
        r = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--rates", bad], capture_output=True, text=True)
        assert r.returncode == 2 and "--rates" in r.stderr.splitlines()[-1], bad
