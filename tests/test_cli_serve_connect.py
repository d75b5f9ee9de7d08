"""The headless commands as a user runs them: `python3 -m sockmon serve|connect ...` subprocesses."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from sockhelp import offline_netns, ss_rows, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sockmon(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "sockmon", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)  # no input to stream


@pytest.fixture
def serve():
    procs = []

    def start(*args):
        proc = subprocess.Popen([sys.executable, "-m", "sockmon", "serve", "127.0.0.1:0", "--json", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(proc)
        port = None
        for _ in range(10):
            line = proc.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            m = re.match(r"listening on 127\.0\.0\.1:(\d+)", ev.get("detail", ""))
            if m:
                port = int(m.group(1))
                break
        assert port, proc.stderr.read()
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def assert_one_line_failure(out, *fragments, status=None):
    assert out.returncode != 0
    if status is not None:
        assert out.returncode == status
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_connect_to_closed_port_is_econnrefused():
    out = sockmon("connect", f"127.0.0.1:{closed_port()}")
    assert_one_line_failure(out, "ECONNREFUSED", "connection refused", status=1)
    assert "failed" in out.stdout  # the timeline still shows the failed call


def test_connect_bad_port():
    out = sockmon("connect", "127.0.0.1:70000")
    assert_one_line_failure(out, "bad port 70000", "0-65535", status=2)
    out = sockmon("connect", "127.0.0.1:http")
    assert_one_line_failure(out, "not a number", status=2)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a network namespace")
def test_connect_unresolvable_name():
    """The real resolver path, inside a fresh namespace whose resolver is its own 127.0.0.1 (nothing
    listens; only lo exists): the lookup fails at once and no query can leave the machine."""
    with offline_netns() as ns:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "sockmon", "connect",
                              "no-such-host.invalid:80"], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert_one_line_failure(out, "EAI_", "cannot resolve 'no-such-host.invalid'")


def test_connect_bad_option_values():
    assert_one_line_failure(sockmon("connect", "127.0.0.1:1", "--linger", "soon"), "linger", status=2)
    assert_one_line_failure(sockmon("connect", "127.0.0.1:1", "--keepalive", "60,10"), "IDLE,INTVL,CNT", status=2)
    assert_one_line_failure(sockmon("connect", "127.0.0.1:1", "--hex", "zz"), "--hex", status=2)
    assert_one_line_failure(sockmon("connect", "127.0.0.1:1", "--timeout", "0"), "--timeout", status=2)


def test_connect_timeline_against_serve(serve):
    proc, port = serve()
    out = sockmon("connect", f"127.0.0.1:{port}", "--send", "hello", "--keepalive", "60,10,3", "--nodelay",
                  "--linger", "2")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ("connect(127.0.0.1:", "ESTABLISHED", "keepalive on idle=60s intvl=10s cnt=3",
                   "linger on, 2 s", "TCP_NODELAY: True", "send(5 bytes)", "bytes_out", "bytes_in",
                   "shutdown(SHUT_WR)", "peer_closed", "closed"):
        assert needle in text, (needle, text)
    assert "Traceback" not in text + out.stderr


def test_connect_json_one_object_per_line(serve):
    proc, port = serve()
    out = sockmon("connect", f"127.0.0.1:{port}", "--hex", "de ad be ef", "--json", "--abort")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "call" and "state" in kinds and kinds[-1] == "closed"
    echoed = [e for e in events if e["kind"] == "bytes_in"]
    assert echoed and echoed[0]["nbytes"] == 4
    assert echoed[0]["data"].encode("utf-8", "backslashreplace").endswith(b"\\xbe\\xef")
    assert "RST" in events[-1]["detail"]
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)


def test_connect_shutdown_hold_and_close(serve):
    proc, port = serve("--mode", "hold")
    t0 = time.monotonic()
    out = sockmon("connect", f"127.0.0.1:{port}", "--shutdown", "wr", "--hold", "0.5", "--close")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 >= 0.5
    assert "FIN_WAIT2" in out.stdout and "close()" in out.stdout


def test_connect_to_reset_server_fails_with_econnreset(serve):
    proc, port = serve("--mode", "reset")
    out = sockmon("connect", f"127.0.0.1:{port}", "--hold", "0.3")
    assert_one_line_failure(out, "ECONNRESET")


def test_connect_timeout_is_etimedout(serve):
    proc, port = serve("--mode", "no-accept", "--backlog", "0")
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    out = sockmon("connect", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert_one_line_failure(out, "ETIMEDOUT", "timed out after 0.5 s")
    assert "SYN_SENT" in out.stdout
    for s in fillers:
        s.close()


def test_serve_sigterm_exits_zero_and_closes(serve):
    proc, port = serve()
    c = socket.create_connection(("127.0.0.1", port), timeout=3)
    c.sendall(b"echo me")
    assert c.recv(100) == b"echo me"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert c.recv(10) == b""  # our connection was closed by the server on the way out
    out = proc.stdout.read()
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert "accepted" in kinds and "bytes_in" in kinds and kinds[-1] == "info"
    assert "Traceback" not in out + proc.stderr.read()
    assert not [r for r in ss_rows(port) if r["state"] == "LISTEN"]
    c.close()


def test_serve_sigint_exits_zero(serve):
    proc, port = serve("--mode", "discard")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_serve_address_in_use_is_one_line():
    busy = socket.create_server(("127.0.0.1", 0))
    out = sockmon("serve", f"127.0.0.1:{busy.getsockname()[1]}", "--no-reuseaddr")
    assert_one_line_failure(out, "EADDRINUSE", "address already in use")
    busy.close()


def test_serve_requires_host():
    out = sockmon("serve", "8080")
    assert_one_line_failure(out, "expected HOST:PORT", status=2)
    out = sockmon("serve")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr and "Traceback" not in out.stderr


def test_serve_text_output_lines(serve):
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "serve", "127.0.0.1:0", "--mode", "close"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", "".join(lines)).group(1))
        c = socket.create_connection(("127.0.0.1", port), timeout=3)
        assert c.recv(10) == b""
        c.close()
        assert wait_for(lambda: "closed" in proc.stdout.readline(), 3)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_commands_do_not_import_textual(serve):
    proc, port = serve()
    code = ("import sys\nfrom sockmon.cli import main\n"
            f"rc = main(['connect', '127.0.0.1:{port}', '--send', 'x', '--close'])\n"
            "print(rc, any(m == 'textual' or m.startswith('textual.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout + out.stderr
