"""Must show: a 10 MB/s stream over loopback shows 10 MB/s (±20 %) in the Connections pane (the real app,
its real collector, the cell text of that row) and in `sockmon ls --json --rates 1`.

The stream is a child process: a listener, a reader that drains it, and a sender paced against the
monotonic clock at 100 kB every 10 ms (behind schedule it catches up, so every window of a second or
so carries 10 MB). SI units: 10 MB/s = 10,000,000 bytes per second."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys

import pytest
from sockmon.core.table.collector import Collector
from sockmon.tui.app import SockmonApp
from test_tui_fixtures import sync, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RATE = 10_000_000  # bytes per second
TOLERANCE = 0.20

STREAM = r"""
import socket, sys, threading, time
chunk, period = 100_000, 0.010  # 100 kB every 10 ms = 10 MB/s
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
snd = socket.create_connection(lst.getsockname()); rcv, _ = lst.accept()

def drain():
    while rcv.recv(1 << 20):
        pass

threading.Thread(target=drain, daemon=True).start()
print(lst.getsockname()[1], snd.getsockname()[1], flush=True)
data = b"x" * chunk
start = time.monotonic()
end = start + float(sys.argv[1])
i = 0
while True:
    due = start + i * period
    now = time.monotonic()
    if due >= end:
        break
    if due > now:
        time.sleep(due - now)
    snd.sendall(data)
    i += 1
"""


@pytest.fixture
def stream():
    """(server port, client port) of a connection carrying 10 MB/s from the client to the server."""
    child = subprocess.Popen([sys.executable, "-c", STREAM, "60"], stdout=subprocess.PIPE, text=True)
    try:
        server_port, client_port = map(int, child.stdout.readline().split())
        yield server_port, client_port
    finally:
        child.kill()
        child.wait()


def parse_rate(text: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+) (B|kB|MB|GB)/s\s*", text)
    assert m, f"not a rate: {text!r}"
    return float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]


def cell_text(table, row, column: str) -> str:
    """The text a row's cell shows on screen (the row's strip as drawn, cut at the column)."""
    index = table.visible_keys.index(table.key_fn(row))
    strip = table._row_strip(index)
    line = "".join(seg.text for seg in strip)
    left = 0
    for col in table.columns:
        if col.key == column:
            return line[left:left + col.width]
        left += col.width + 1
    raise KeyError(column)


@sync
async def test_a_10_mb_per_s_stream_shows_10_mb_per_s_in_the_connections_pane(stream):
    server_port, client_port = stream
    app = SockmonApp(interval=1.0, collector_factory=lambda **kw: Collector(use_tracepoint=False, **kw),
                     is_root=os.geteuid() == 0)
    async with app.run_test(size=(200, 40)) as pilot:
        table = app.connections.table

        def rows():
            found = {s.sport: s for s in table.visible_rows() if s is not None
                     and {s.sport, s.dport} == {server_port, client_port}}
            return found if len(found) == 2 else None

        await wait_for(pilot, rows, timeout=20, what="both ends of the stream in the table")
        app.connections.apply_filter(str(server_port))  # both rows on screen, whatever else the host holds
        received, sent = [], []
        seen = app.updates_applied
        while len(received) < 3:  # three consecutive refreshes after the first rate
            await wait_for(pilot, lambda n=seen: app.updates_applied > n, timeout=10, what="the next refresh")
            seen = app.updates_applied
            await pilot.pause()
            r = rows()
            rx = cell_text(table, r[server_port], "rx")
            tx = cell_text(table, r[client_port], "tx")
            if not rx.strip():
                continue  # first sighting: blank, no rate yet
            received.append(parse_rate(rx))
            sent.append(parse_rate(tx))
        assert "Recv/s" in "".join(seg.text for seg in table._header_strip())
        for what, values in (("received", received), ("sent", sent)):
            rate = statistics.median(values)
            assert abs(rate - RATE) <= TOLERANCE * RATE, f"{what}: {values} (cells), want 10 MB/s ±20 %"


def test_ls_json_rates_shows_10_mb_per_s(stream):
    server_port, client_port = stream
    import time

    time.sleep(0.5)  # the stream is under way
    out = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--json", "--rates", "1", "--port",
                          str(server_port)], capture_output=True, text=True, timeout=30, check=True).stdout
    rows = {(r["sport"], r["dport"]): r for r in map(json.loads, out.splitlines())}
    rcv, snd = rows[(server_port, client_port)], rows[(client_port, server_port)]
    assert abs(rcv["rx_bps"] - RATE) <= TOLERANCE * RATE, rcv["rx_bps"]
    assert abs(snd["tx_bps"] - RATE) <= TOLERANCE * RATE, snd["tx_bps"]
    assert rcv["tx_bps"] < 0.01 * RATE and snd["rx_bps"] < 0.01 * RATE  # one direction only
    listener = next(r for r in rows.values() if r["state"] == "LISTEN")
    assert listener["rx_bps"] == 0.0  # seen twice, nothing moved: 0, not null
    text = subprocess.run([sys.executable, "-m", "sockmon", "ls", "--rates", "0.5", "--port", str(server_port)],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    assert text.splitlines()[0].split()[3:5] == ["Recv/s", "Send/s"]
    assert re.search(r"\d+(\.\d+)? MB/s", text)
