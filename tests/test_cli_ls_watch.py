"""`sockmon ls` and `sockmon watch` end to end (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from sockmon.core.table.tracepoint import list_instances, tracing_available

OK, WHY = tracing_available()
SOCKMON = [sys.executable, "-m", "sockmon"]
STATE_NAMES = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"}


def sockmon(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([*SOCKMON, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def listener_with_peer():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(5)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    yield lst.getsockname()[1], cli
    for s in (lst, cli, srv):
        s.close()


def test_ls_json(listener_with_peer):
    port, cli = listener_with_peer
    r = sockmon("ls", "--json", "--port", str(port))
    assert r.returncode == 0, r.stderr
    # (an older TIME_WAIT may share the reused port number: not ours)
    rows = [row for row in map(json.loads, r.stdout.splitlines()) if row["state"] != "TIME_WAIT"]
    assert len(rows) == 3
    required = {"family", "state", "src", "sport", "dst", "dport", "recv_q", "send_q", "timer", "uid", "inode",
                "cookie", "pid", "process", "tcp_info"}
    for row in rows:
        assert required <= row.keys()
        assert row["state"] in STATE_NAMES and row["family"] == "inet"
        assert row["pid"] == os.getpid() and row["process"]
        assert row["timer"] is None or set(row["timer"]) == {"name", "expires_ms", "retrans"}
    lst = next(r for r in rows if r["state"] == "LISTEN")
    assert (lst["sport"], lst["send_q"], lst["recv_q"]) == (port, 5, 0)
    ka = next(r for r in rows if r["sport"] == cli.getsockname()[1])
    assert ka["timer"]["name"] == "keepalive" and ka["tcp_info"]["snd_mss"] > 0


def test_ls_table_is_aligned_with_process_column(listener_with_peer):
    port, _ = listener_with_peer
    r = sockmon("ls", "--port", str(port))
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if not x.startswith("TIME_WAIT")]
    assert lines[0].split()[:3] == ["State", "Recv-Q", "Send-Q"] and "Process" in lines[0]
    col = lines[0].index("Local Address:Port")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[1:])  # column starts line up
    assert lines[1].startswith("LISTEN") and f"pid={os.getpid()}" in lines[1]
    assert len(lines) == 4


def test_ls_listening_and_state_filters(listener_with_peer):
    port, _ = listener_with_peer
    rows = [json.loads(x) for x in sockmon("ls", "--json", "--listening", "--port", str(port)).stdout.splitlines()]
    assert [r["state"] for r in rows] == ["LISTEN"]
    rows = [json.loads(x) for x in sockmon("ls", "--json", "--state", "established", "--state", "LISTEN",
                                           "--port", str(port)).stdout.splitlines()]
    assert Counter(r["state"] for r in rows) == {"ESTABLISHED": 2, "LISTEN": 1}


@pytest.mark.parametrize("args,needle", [
    (["ls", "--state", "BOGUS"], "unknown TCP state"),
    (["ls", "--port", "99999"], "port must be 0-65535"),
    (["ls", "--port", "http"], "port must be a number"),
    (["ls", "--netns", "no-such-ns-xyz"], "no network namespace"),
    (["watch", "--interval", "-1"], "--interval"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    r = sockmon(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("sockmon")]) == 1


def test_ls_and_watch_do_not_import_textual():
    code = ("import sys\nfrom sockmon.cli import ls, watch\nimport argparse\np=argparse.ArgumentParser()\n"
            "s=p.add_subparsers()\nls.register(s); watch.register(s)\na=p.parse_args(['ls','--port','1'])\n"
            "a.run(a)\nimport sockmon.core.table.collector, sockmon.core.table.tracepoint\n"
            "print(any(m.split('.')[0]=='textual' for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "False"


def test_ls_loads_neither_the_ui_nor_the_lab_engines():
    code = ("import sys\nfrom sockmon.cli import build_parser\na = build_parser().parse_args(['ls', '--port', '1'])\n"
            "a.run(a)\nprint(sorted(m for m in sys.modules if m.startswith(('textual', 'sockmon.core.lab.'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "[]"  # a whole-process `ls` pays only for what it uses


def _start_watch(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([*SOCKMON, "watch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 10
    while time.monotonic() < end:  # ready once its tracefs instance exists
        if any(n.startswith(f"sockmon-{proc.pid}-") for n in list_instances()):
            time.sleep(0.1)
            return proc
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("watch did not start its tracer")


EXPECTED_TEN = Counter({("CLOSE", "SYN_SENT"): 1, ("SYN_SENT", "ESTABLISHED"): 1, ("ESTABLISHED", "FIN_WAIT1"): 1,
                        ("FIN_WAIT1", "FIN_WAIT2"): 1, ("FIN_WAIT2", "CLOSE"): 1, ("LISTEN", "SYN_RECV"): 1,
                        ("SYN_RECV", "ESTABLISHED"): 1, ("ESTABLISHED", "CLOSE_WAIT"): 1,
                        ("CLOSE_WAIT", "LAST_ACK"): 1, ("LAST_ACK", "CLOSE"): 1})


def _churn(port_sock: socket.socket, n: int) -> None:
    addr = port_sock.getsockname()
    for _ in range(n):
        c = socket.create_connection(addr)
        s, _ = port_sock.accept()
        c.close()
        s.close()


@pytest.mark.skipif(not OK, reason=f"tracepoint unavailable: {WHY}")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watch_captures_all_ten_transitions_of_500_connections(sig):
    n = 500 if sig == signal.SIGTERM else 100
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    port = lst.getsockname()[1]
    proc = _start_watch("--json", "--port", str(port))
    try:
        t0 = time.monotonic()
        _churn(lst, n)
        rate = n / (time.monotonic() - t0)
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        lst.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "overrun" not in err and "dropped" not in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert all({"ts", "family", "src", "sport", "dst", "dport", "old", "new", "source", "dwell_ms"} <= r.keys()
               for r in rows)
    assert {r["source"] for r in rows} == {"tracepoint"}
    conn = [r for r in rows if r["dport"] != 0]  # the listener's own transitions have dport 0
    pairs = Counter((r["old"], r["new"]) for r in conn)
    assert pairs == Counter({k: n for k in EXPECTED_TEN}), f"{rate:.0f} conn/s: {pairs}"
    # per connection (client port): the 4 client transitions after SYN_SENT + the 5 server ones
    per_client = Counter(r["sport"] if r["dport"] == port else r["dport"] for r in conn if r["sport"] or r["dport"] != port)
    assert len(per_client) == n and set(per_client.values()) == {9}
    assert not [x for x in list_instances() if x.startswith(f"sockmon-{proc.pid}-")]


def test_watch_inferred_stream_and_sigterm():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    proc = subprocess.Popen([*SOCKMON, "watch", "--inferred", "--port", str(port), "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)  # interpreter start + first snapshot
        cli = socket.create_connection(lst.getsockname())
        cli_port = cli.getsockname()[1]
        srv, _ = lst.accept()
        time.sleep(0.4)
        cli.shutdown(socket.SHUT_WR)
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        cli.close()
        srv.close()
    finally:
        lst.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "inferred" in err
    lines = out.splitlines()
    assert any("CLOSE -> ESTABLISHED" in x.replace("  ", " ").replace("  ", " ") for x in lines), out
    assert any("ESTABLISHED -> CLOSE_WAIT" in x for x in lines), out
    # The active closer's path: FIN_WAIT1 is seen when a snapshot lands before the peer's ACK of our FIN
    # (a delayed ACK can hold it ~40-200 ms on loopback); either way it must end in FIN_WAIT2.
    client_side = [x.split()[1:4:2] for x in lines if f"127.0.0.1:{cli_port} -> " in x]
    assert client_side in ([["CLOSE", "ESTABLISHED"], ["ESTABLISHED", "FIN_WAIT2"]],
                           [["CLOSE", "ESTABLISHED"], ["ESTABLISHED", "FIN_WAIT1"], ["FIN_WAIT1", "FIN_WAIT2"]]), out
    assert all(x.rstrip().endswith("[inferred]") for x in lines)
