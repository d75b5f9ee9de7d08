"""`sockmon connect` and `serve` as good as nc: real sockets on loopback, the commands run as a user runs them.

The peer is a small line server in this file that answers ``+PONG\\r\\n`` only to a complete ``PING\\r\\n`` or
``PING\\n`` line (like redis), records every byte it receives and closes when the client half-closes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from sockhelp import ss_rows, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def sockmon(*args, stdin=None, timeout=30, text=True):
    """Run ``python -m sockmon ARGS``; ``stdin``: bytes piped in, else /dev/null (no input)."""
    return subprocess.run([sys.executable, "-m", "sockmon", *args], capture_output=True, timeout=timeout,
                          cwd=ROOT, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          text=text and stdin is None)


class LineServer:
    """Answers +PONG\\r\\n to each complete PING line; records what each connection sent; closes on EOF."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        got = bytearray()
        buf = b""
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                got += data
                buf += data
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    if line in (b"PING", b"PING\r"):
                        conn.sendall(b"+PONG\r\n")
        with self.lock:
            self.received.append(bytes(got))

    def last(self) -> bytes:
        assert wait_for(lambda: self.received, 5)
        with self.lock:
            return self.received[-1]

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def lines():
    server = LineServer()
    yield server
    server.close()


def assert_ok(out):
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "Traceback" not in str(out.stderr)


# ------------------------------------------------------------------------------------------ connect
def test_send_understands_c_escapes(lines):
    out = sockmon("connect", f"127.0.0.1:{lines.port}", "--send", r"PING\r\n")
    assert_ok(out)
    assert lines.last() == b"PING\r\n"
    assert "< +PONG\\r\\n" in out.stdout  # what came back, printed, marked as received, CR LF escaped
    assert "> PING\\r\\n" in out.stdout


def test_send_with_a_bad_escape_is_one_line():
    out = sockmon("connect", "127.0.0.1:1", "--send", r"PING\q")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "bad --send" in out.stderr and "\\q" in out.stderr


def test_piped_stdin_two_lines_then_half_close(lines):
    out = sockmon("connect", f"127.0.0.1:{lines.port}", stdin=b"PING\nPING\r\n")
    assert out.returncode == 0, out.stderr
    assert lines.last() == b"PING\nPING\r\n"  # the server saw EOF (our half-close), then closed
    text = out.stdout.decode()
    assert text.count("+PONG") == 2, text
    assert "shutdown(SHUT_WR)" in text and "peer_closed" in text


def test_crlf_turns_lf_into_crlf(lines):
    out = sockmon("connect", f"127.0.0.1:{lines.port}", "--crlf", stdin=b"PING\nPING\r\nPI\nNG\n")
    assert out.returncode == 0, out.stderr
    assert lines.last() == b"PING\r\nPING\r\nPI\r\nNG\r\n"  # an existing CRLF is kept as it is
    assert out.stdout.decode().count("+PONG") == 2


def test_lf_to_crlf_across_chunks():
    from sockmon.cli.connect import LfToCrlf

    conv = LfToCrlf()
    assert conv(b"a\r") + conv(b"\nb\n") + conv(b"\n") == b"a\r\nb\r\n\r\n"


def test_raw_writes_received_bytes_unchanged(lines):
    out = sockmon("connect", f"127.0.0.1:{lines.port}", "--raw", stdin=b"PING\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"+PONG\r\n"  # byte for byte, nothing else on stdout
    assert b"bytes_in" in out.stderr and b"connect(127.0.0.1:" in out.stderr


def test_json_events_carry_wall_clock_time(lines):
    before = time.time()
    out = sockmon("connect", f"127.0.0.1:{lines.port}", "--send", r"PING\r\n", "--json")
    after = time.time()
    assert_ok(out)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events and all(ISO.match(e["time"]) for e in events), events[0]
    for e in events:
        wall = datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        assert before - 1 <= wall <= after + 1, (e, before, after)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)  # the monotonic ts stays, for ordering
    reply = next(e for e in events if e["kind"] == "bytes_in")
    assert bytes.fromhex(reply["hex"]) == b"+PONG\r\n"


def test_human_lines_start_with_wall_clock_time(lines):
    out = sockmon("connect", f"127.0.0.1:{lines.port}", "--send", r"PING\r\n")
    assert_ok(out)
    now = time.time()
    for line in out.stdout.splitlines():
        stamp = line.split(" ", 1)[0]
        assert ISO.match(stamp), line
        wall = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        assert now - 30 <= wall <= now + 1


def test_graceful_active_close_reports_time_wait_from_the_kernel_table(lines):
    out = sockmon("connect", f"127.0.0.1:{lines.port}", "--send", r"PING\r\n", "--json")
    assert_ok(out)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    tw = [e for e in events if e["kind"] == "state" and e.get("state") == "TIME_WAIT"]
    assert tw, [e.get("state") for e in events]
    m = re.search(r"timewait timer (\d+\.\d) s left", tw[0]["detail"])
    assert m and 50 <= float(m.group(1)) <= 60.5, tw[0]["detail"]
    local_port = tw[0]["local"][1]
    rows = [r for r in ss_rows(local_port) if r["lport"] == local_port and r["pport"] == lines.port]
    assert rows and rows[0]["state"] == "TIME-WAIT", rows  # the kernel agrees


def test_peer_that_closes_at_once_is_a_reset_not_enotconn():
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "serve", "127.0.0.1:0", "--mode", "close", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = _port_of(proc)
        out = sockmon("connect", f"127.0.0.1:{port}", "--send", "hi")
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert "ECONNRESET" in out.stderr and "reset" in out.stderr
        assert "ENOTCONN" not in out.stdout + out.stderr and "connect first" not in out.stdout + out.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def _never_reading_server():
    """A listener (small receive buffer) that accepts one client and never reads."""
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    box = []
    threading.Thread(target=lambda: box.append(lst.accept()[0]), daemon=True).start()
    return lst, box


@pytest.mark.parametrize("end", [[], ["--abort"]])
def test_data_not_delivered_fails_with_the_count(tmp_path, end):
    from sockmon.core.tcpinfo import read_tcp_info

    lst, box = _never_reading_server()
    big = tmp_path / "big"
    big.write_bytes(b"A" * 16_000_000)  # far more than the send + receive buffers hold; argv could not
    try:
        with open(big, "rb") as fh:
            out = subprocess.run([sys.executable, "-m", "sockmon", "connect", f"127.0.0.1:{lst.getsockname()[1]}",
                                  "-w", "1", *end], stdin=fh, capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert out.returncode == 1, (out.stdout[-2000:], out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        m = re.search(r"(\d+) bytes sent were not delivered to the peer's kernel before close "
                      r"\((\d+) bytes read from stdin\)", out.stderr)
        assert m, out.stderr
        left, read = int(m.group(1)), int(m.group(2))
        assert wait_for(lambda: box, 2)
        delivered = read_tcp_info(box[0]).bytes_received  # what the peer's kernel took (and acked)
        assert left > 0 and left + delivered == read, (left, delivered, read)
        if end:
            assert "RST sent" in out.stdout
    finally:
        for s in box:
            s.close()
        lst.close()


def test_numeric_never_resolves_a_name(lines):
    out = sockmon("connect", "-n", "localhost:80")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "not a numeric address" in out.stderr
    out = sockmon("serve", "--numeric", "localhost:0")
    assert out.returncode == 2 and "not a numeric address" in out.stderr
    out = sockmon("connect", "-n", f"127.0.0.1:{lines.port}", "--send", r"PING\n")
    assert_ok(out)
    assert "+PONG" in out.stdout


def test_numeric_asks_the_resolver_for_numeric_hosts_only():
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.address import resolve

    seen = []

    def resolver(host, port, family=0, type=0, proto=0, flags=0):
        seen.append(flags)
        return socket.getaddrinfo(host, port, family, type, proto, flags)

    assert resolve("::1", 80, numeric=True, resolver=resolver)[0][1][0] == "::1"
    assert seen[-1] & socket.AI_NUMERICHOST
    with pytest.raises(BadInput, match="not a numeric address"):
        resolve("localhost", 80, numeric=True, resolver=resolver)
    assert seen[-1] & socket.AI_NUMERICHOST


def test_version():
    from importlib import metadata

    import sockmon

    for flag in ("--version", "-V"):
        out = sockmon_run(flag)
        assert out.returncode == 0 and out.stdout.strip() == f"sockmon {metadata.version('sockmon')}"
    assert metadata.version("sockmon") == sockmon.__version__


def sockmon_run(*args):
    return subprocess.run([sys.executable, "-m", "sockmon", *args], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, stdin=subprocess.DEVNULL)


# -------------------------------------------------------------------------------------------- serve
def _port_of(proc) -> int:
    for _ in range(20):
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(proc.stderr.read())


@pytest.fixture
def serve():
    procs = []

    def start(*args, text=True):
        proc = subprocess.Popen([sys.executable, "-m", "sockmon", "serve", "127.0.0.1:0", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=text,
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_serve_prints_what_a_client_sends(serve):
    proc = serve("--mode", "discard")
    port = _port_of(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as c:
        c.sendall(b"hello \x1b[2J\r\n")
    line = wait_for(lambda: next((x for x in iter(proc.stdout.readline, "") if "bytes_in" in x), None), 5)
    assert line and "< hello \\x1b[2J\\r\\n" in line, line
    assert "\x1b" not in line  # the peer's escape sequence is shown, never acted on
    assert ISO.match(line.split(" ", 1)[0])


def test_serve_raw_and_json(serve):
    raw = serve("--mode", "discard", "--raw", text=False)
    js = serve("--mode", "discard", "--json")
    port_js = _port_of(js)
    port_raw = None
    for _ in range(20):
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", raw.stderr.readline())
        if m:
            port_raw = int(m.group(1))
            break
    payload = b"\x00\xffbinary\x1b\r\n"
    for port in (port_raw, port_js):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as c:
            c.sendall(payload)
    assert raw.stdout.read(len(payload)) == payload
    ev = None
    while ev is None or ev["kind"] != "bytes_in":
        ev = json.loads(js.stdout.readline())
    assert bytes.fromhex(ev["hex"]) == payload and ISO.match(ev["time"])


def test_serve_default_backlog_is_somaxconn(serve):
    proc = serve("--json")
    with open("/proc/sys/net/core/somaxconn") as fh:
        somaxconn = int(fh.read())
    events = [json.loads(proc.stdout.readline()) for _ in range(3)]
    assert any(e["detail"] == f"listen(backlog={somaxconn})" for e in events), events


def _burst(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def test_burst_of_2000_clients_all_accepted_or_overflow_reported(serve):
    """Default settings: a burst of 2,000 clients (from 4 processes at once) is either accepted whole or
    `serve` says on stdout that its accept queue overflowed. Never clients left half-open in silence."""
    proc = serve("--json")
    port = _port_of(proc)
    accepted = 0
    overflow = []
    lock = threading.Lock()

    def read() -> None:
        nonlocal accepted
        for line in proc.stdout:
            ev = json.loads(line)
            with lock:
                if ev["kind"] == "accepted":
                    accepted += 1
                elif "accept queue overflow" in ev.get("detail", ""):
                    overflow.append(ev)

    threading.Thread(target=read, daemon=True).start()
    code = ("import socket, sys, time\nsocks = []\nfor _ in range(500):\n"
            "    s = socket.socket(); s.setblocking(False); s.connect_ex(('127.0.0.1', int(sys.argv[1])));"
            " socks.append(s)\nprint('done', flush=True)\nsys.stdin.read()\n")
    clients = [subprocess.Popen([sys.executable, "-c", code, str(port)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for c in clients:
            assert c.stdout.readline().strip() == "done"
        wait_for(lambda: accepted >= 2000 or overflow, 15, 0.1)
        time.sleep(1.5)  # an overflow line comes at most a second after the drops
        with lock:
            assert accepted == 2000 or overflow, (accepted, overflow)
            if accepted < 2000:
                assert "dropped" in overflow[0]["detail"], overflow
    finally:
        for c in clients:
            c.stdin.close()
            c.wait(10)


def test_serve_reports_accept_queue_overflow(serve):
    """A backlog too small for the burst: one line a second on stdout says so, with the listener's count."""
    proc = serve("--json", "--backlog", "4", "--mode", "no-accept")
    port = _port_of(proc)
    socks = _burst(port, 64)
    try:
        line = wait_for(lambda: next((x for x in iter(proc.stdout.readline, "")
                                      if "accept queue overflow" in x), None), 5)
        ev = json.loads(line)
        assert ev["kind"] == "error" and re.search(r"\d+ connection attempts dropped by this listener", ev["detail"])
        assert "queue 5/4" in ev["detail"] or "queue 4/4" in ev["detail"], ev["detail"]
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------- engine features the CLI uses
def test_engine_accept_queue_reads_the_listeners_queue():
    from sockmon.core.lab.server import ServerEngine

    server = ServerEngine("127.0.0.1", 0, mode="no-accept", backlog=7).start()
    socks = []
    try:
        q = server.accept_queue()
        assert q.queued == 0 and q.backlog == 7 and q.drops is not None
        socks = _burst(server.address[1], 3)
        assert wait_for(lambda: server.accept_queue().queued == 3, 3), server.accept_queue()
    finally:
        for s in socks:
            s.close()
        server.stop()
    assert server.accept_queue() is None  # the listener is closed


def test_engine_bytes_out_carry_data_and_a_delivered_close_leaves_nothing(lines):
    from sockhelp import Events
    from sockmon.core.lab.client import ClientEngine
    from sockmon.core.lab.events import EventKind

    ev = Events()
    eng = ClientEngine(on_event=ev, event_data_max=4)
    try:
        eng.connect("127.0.0.1", lines.port)
        assert eng.wait_connected(5)
        eng.send(b"PING\r\n")
        ev.wait(EventKind.BYTES_IN)
        out = ev.of(EventKind.BYTES_OUT)
        assert out[0].nbytes == 6 and out[0].data == b"PING"  # capped at event_data_max
        assert ">" in out[0].line() and "…(+2 bytes)" in out[0].line()
        eng.graceful_close()
        assert eng.wait_closed(5)
        assert eng.undelivered == 0 and eng.pending_out == 0
    finally:
        eng.stop()


def test_engine_send_room_bounds_what_waits_in_the_engine():
    from sockmon.core.lab.client import ClientEngine

    lst, box = _never_reading_server()
    eng = ClientEngine()
    try:
        eng.connect(*lst.getsockname())
        assert eng.wait_connected(5)
        sent = 0
        for _ in range(200):  # 200 × 64 KiB: far more than the kernel buffers hold
            if not eng.wait_send_room(256 * 1024, 0.5):
                break
            eng.send(b"x" * 65536)
            sent += 65536
        assert sent < 200 * 65536  # the writer was held back
        assert eng.pending_out <= 256 * 1024 + 65536
        eng.abort()
        assert eng.wait_closed(5)
        assert eng.undelivered > 0
    finally:
        eng.stop()
        for s in box:
            s.close()
        lst.close()
