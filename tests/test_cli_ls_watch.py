"""`sockmon ls` and `sockmon watch` end to end (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
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
    (["watch", "--interval", "nan"], "--interval"),
    (["ls", "--netns", ""], "empty network namespace name"),
    (["--netns", "", "ls"], "empty network namespace name"),
    (["--netns", "no-such-ns-xyz", "watch"], "no network namespace"),
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


# -- `sockmon watch | head -1`: a closed pipe ends the command with 0 in every mode ------------------

# The venv's files need not be readable by nobody: import what `watch` needs, then drop to nobody.
AS_NOBODY = ("import os, sys\nfrom sockmon.cli import build_parser, main\nbuild_parser()\n"
             "import encodings.ascii, json, sockmon.core.table.collector, sockmon.core.table.snapshot\n"
             "import sockmon.core.table.tracepoint\n"
             "os.setgid(65534); os.setuid(65534); sys.exit(main())")


@pytest.mark.parametrize("mode", [
    pytest.param(("--json",), id="tracepoint-json", marks=pytest.mark.skipif(not OK, reason=str(WHY))),
    pytest.param((), id="tracepoint-text", marks=pytest.mark.skipif(not OK, reason=str(WHY))),
    pytest.param(("--inferred", "--json"), id="inferred-json"),
    pytest.param(("--inferred",), id="inferred-text"),
    pytest.param(("nobody",), id="non-root-default",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")),
])
def test_watch_exits_0_when_the_reader_closes_the_pipe(mode):
    """Read one line, close the pipe (what `| head -1` does), keep transitions coming: the watcher must
    notice EPIPE on its next write and exit 0, without a traceback, leaving no tracefs instance."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    port = lst.getsockname()[1]
    if mode == ("nobody",):
        cmd = [sys.executable, "-c", AS_NOBODY, "watch", "--port", str(port), "--interval", "0.05"]
    else:
        cmd = [*SOCKMON, "watch", *mode, "--port", str(port), "--interval", "0.05"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def churn() -> None:  # connections that live ~0.1 s: seen by the tracepoint and by snapshot diffs
        held = []
        while not done.is_set():
            c = socket.create_connection(("127.0.0.1", port))
            s, _ = lst.accept()
            held.append((c, s))
            if len(held) > 3:
                for x in held.pop(0):
                    x.close()
            time.sleep(0.03)
        for pair in held:
            for x in pair:
                x.close()

    th = threading.Thread(target=churn, daemon=True)
    th.start()
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no transition printed within 15 s"
        first = proc.stdout.readline()
        assert first.strip()
        proc.stdout.close()  # the reader is gone
        t0 = time.monotonic()
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
        err = proc.stderr.read().decode()
    finally:
        done.set()
        th.join(5)
        lst.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err
    assert took < 5, took
    assert "Traceback" not in err and "Error" not in err, err
    assert not [x for x in list_instances() if x.startswith(f"sockmon-{proc.pid}-")]
    if "--json" in mode:
        assert json.loads(first)["dport"] in (port, 0) or json.loads(first)["sport"] == port


def _vm_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


WATCH_HWM_GROWTH_MB = 20  # peak RSS growth allowed while draining a ~16 MB backlog (batches of 256 KiB)


@pytest.mark.skipif(not OK, reason=f"tracepoint unavailable: {WHY}")
def test_watch_json_memory_stays_flat_while_draining_a_backlog():
    """The watcher is stopped (SIGSTOP) while 8,000 connections (80,000 transitions, ~16 MB of trace text)
    pile up in the kernel, then let go: it drains in bounded batches, so its peak RSS (VmHWM) grows by
    less than WATCH_HWM_GROWTH_MB (reading the whole backlog at once grew it by far more), and every
    transition arrives."""
    n = 8000
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    port = lst.getsockname()[1]
    proc = _start_watch("--json", "--port", str(port))
    try:
        base = _vm_kb(proc.pid, "VmHWM")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            _churn(lst, n)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        lines = 0
        fd = proc.stdout.fileno()  # raw reads: select() cannot see lines already in a Python buffer
        deadline = time.monotonic() + 60
        while lines < 10 * n and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 5)
            data = os.read(fd, 1 << 16) if ready else b""
            if not data:
                break
            lines += data.count(b"\n")
        peak = _vm_kb(proc.pid, "VmHWM")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        lst.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    growth_mb = (peak - base) / 1024
    print(f"watch VmHWM {base / 1024:.1f} -> {peak / 1024:.1f} MB")
    assert growth_mb < WATCH_HWM_GROWTH_MB, f"VmHWM {base / 1024:.0f} -> {peak / 1024:.0f} MB while draining"
    assert proc.returncode == 0, err
    assert "dropped" not in err, err
    assert lines == 10 * n, (lines, err)


NS_CHURN = r"""
import socket, sys, time
lst = socket.socket(); lst.bind(("127.0.0.1", int(sys.argv[1]))); lst.listen(16)
held = []
while True:
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s, _ = lst.accept(); held.append((c, s))
    if len(held) > 3:
        for x in held.pop(0):
            x.close()
    time.sleep(0.05)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a network namespace")
def test_watch_follows_the_top_level_netns_option():
    """`sockmon --netns NAME watch` shows that namespace's transitions (inferred), not the host's."""
    import secrets

    ns = f"smwatch{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    gen = watch = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        gen = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", NS_CHURN, str(port)])
        watch = subprocess.Popen([*SOCKMON, "--netns", ns, "watch", "--json", "--port", str(port), "--interval",
                                  "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([watch.stdout], [], [], 15)
        assert ready, "no transition from the namespace within 15 s"
        row = json.loads(watch.stdout.readline())
        assert row["source"] == "inferred" and port in (row["sport"], row["dport"])
        watch.send_signal(signal.SIGTERM)
        _out, err = watch.communicate(timeout=10)
        assert watch.returncode == 0, err
        assert f"namespace '{ns}'" in err
    finally:
        for p in (watch, gen):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], check=True)
