"""Timer text as precise as ss: the TUI's compact form (tui/fmt.py ``duration``), ``sockmon ls``'s ss form
(core/states.py ``ss_duration``), both checked against ``ss -tno`` on real keepalive and TIME_WAIT sockets."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from sockmon.core.records import Timer
from sockmon.core.states import TIME_WAIT, TIMER_KEEPALIVE, TIMER_TIMEWAIT, ss_duration
from sockmon.core.table.snapshot import take_snapshot
from sockmon.tui import fmt

needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0ms"), (476, "476ms"), (999, "999ms"), (1098, "1.0s"), (9501, "9.5s"), (59_100, "59.1s"),
    (59_999, "59.9s"), (60_000, "1m00s"), (62_000, "1m02s"), (265_000, "4m25s"), (265_999, "4m25s"),
    (725_000, "12m05s"), (3_599_999, "59m59s"), (3_600_000, "1h00m"), (3_720_000, "1h02m"),
    (7_200_000 - 1500, "1h59m"), (-5, "0ms"),
])
def test_duration_is_compact_and_truncates_like_ss(ms, text):
    assert fmt.duration(ms) == text


@pytest.mark.parametrize(("ms", "text"), [
    # iproute2 misc/ss.c print_ms_timer: what ss -o prints for these milliseconds
    (0, ""), (476, "476ms"), (1098, "1.098sec"), (9501, "9.501sec"), (10_000, "10sec"), (13_400, "13sec"),
    (59_999, "59sec"), (60_000, "1min"), (60_500, "1min"), (265_000, "4min25sec"), (599_000, "9min59sec"),
    (600_000, "10min"), (725_000, "12min"), (7_198_500, "119min"),
])
def test_ss_duration_is_ss_print_ms_timer(ms, text):
    assert ss_duration(ms) == text


def test_timer_text_is_the_one_formatter():
    t = Timer(TIMER_KEEPALIVE, 265_400, 0)
    assert fmt.timer_text(t, 0).plain == "keepalive 4m25s"  # not "keepalive 4m" (issue #11)
    assert fmt.timer_text(t, 400.0).plain == "keepalive 4m25s"
    assert fmt.timer_text(Timer(TIMER_TIMEWAIT, 41_500, 0), 250.0).plain == "timewait 41.2s"
    assert fmt.timer_text(Timer(1, 204, 2), 0).plain == "on 204ms r2"


def _ss_seconds(text: str) -> float:
    """Seconds of an ss timer text: 4min25sec, 12min, 59sec, 9.501sec (older ss: 9.501ms), 476ms."""
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(?:sec|\.(\d{3})(?:sec|ms)))?(?:(\d+)ms)?", text)
    assert m, text
    mins, secs, frac, ms = m.groups()
    return int(mins or 0) * 60 + int(secs or 0) + int(frac or 0) / 1000 + int(ms or 0) / 1000


def _our_seconds(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d)?)s)?(?:(\d+)ms)?", text)
    assert m, text
    h, mins, secs, ms = m.groups()
    return int(h or 0) * 3600 + int(mins or 0) * 60 + float(secs or 0) + int(ms or 0) / 1000


def _ss_timers(port: int) -> dict[tuple[int, int], tuple[str, str]]:
    out = subprocess.run(["ss", "-tnoa", f"( sport = :{port} or dport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    timers = {}
    for line in out.splitlines()[1:]:
        m = re.search(r"(\S+):(\d+)\s+(\S+):(\d+)\s+timer:\((\w+),([^,]*),\d+\)", line)
        if m:
            timers[(int(m.group(2)), int(m.group(4)))] = (m.group(5), m.group(6))
    return timers


@pytest.fixture
def keepalive_and_time_wait():
    """A connection with a 300 s keepalive timer running, and a TIME_WAIT socket (its client closed first)."""
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 300)
    srv, _ = lst.accept()
    tw_cli = socket.create_connection(("127.0.0.1", port))
    tw_srv, _ = lst.accept()
    tw_port = tw_cli.getsockname()[1]
    tw_cli.close()  # FIN first: this end goes FIN_WAIT2 → TIME_WAIT once the server closes too
    tw_srv.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(s.state == TIME_WAIT and s.sport == tw_port for s in take_snapshot(port=port).sockets):
            break
        time.sleep(0.05)
    time.sleep(1.3)  # let both timers run off their whole-second starts
    yield port, cli.getsockname()[1], tw_port
    for s in (cli, srv, lst):
        s.close()


@needs_ss
def test_timer_text_matches_ss_for_the_same_sockets(keepalive_and_time_wait):
    port, ka_port, tw_port = keepalive_and_time_wait
    snap = take_snapshot(port=port)
    theirs = _ss_timers(port)
    ours = {(s.sport, s.dport): s.timer for s in snap.sockets if s.timer is not None and s.timer.kind}
    ka = ours[(ka_port, port)]
    tw = ours[(tw_port, port)]
    assert ka.kind == TIMER_KEEPALIVE and tw.kind == TIMER_TIMEWAIT
    assert theirs[(ka_port, port)][0] == "keepalive" and theirs[(tw_port, port)][0] == "timewait"
    for timer, (_, ss_text) in ((ka, theirs[(ka_port, port)]), (tw, theirs[(tw_port, port)])):
        compact = fmt.duration(timer.expires_ms)
        # same seconds as ss (the two reads are a few ms apart: at most one second boundary between)
        assert abs(_our_seconds(compact) - _ss_seconds(ss_text)) <= 1.0, (compact, ss_text)
        assert abs(_ss_seconds(ss_duration(timer.expires_ms)) - _ss_seconds(ss_text)) <= 1.0
    # the keepalive timer shows minutes AND seconds, as ss does (4min5xsec), never a bare "4m"/"5m"
    assert re.fullmatch(r"4m[0-5]\ds", fmt.duration(ka.expires_ms)), fmt.duration(ka.expires_ms)
    assert re.fullmatch(r"4min[1-5]?\dsec", theirs[(ka_port, port)][1])
    assert re.fullmatch(r"5\d\.\ds", fmt.duration(tw.expires_ms))


@needs_ss
def test_ls_text_prints_timers_as_ss_does(keepalive_and_time_wait):
    port, ka_port, tw_port = keepalive_and_time_wait
    out = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--port", str(port), "--no-owners"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    theirs = _ss_timers(port)
    for sport in (ka_port, tw_port):
        line = next(ln for ln in out.splitlines() if f"127.0.0.1:{sport} " in ln)
        m = re.search(r"timer:\((\w+),([^,]*),(\d+)\)", line)
        assert m, line
        name, text = theirs[(sport, port)]
        assert m.group(1) == name
        assert abs(_ss_seconds(m.group(2)) - _ss_seconds(text)) <= 1.0, (m.group(2), text)
        # the same words ss uses: min / sec, never a float number of seconds
        assert re.fullmatch(r"(\d+min)?(\d+(\.\d{3})?sec)?(\d+ms)?", m.group(2))
