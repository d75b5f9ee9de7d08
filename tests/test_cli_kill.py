"""`sockmon kill` end to end: subprocesses as a user runs them, real loopback connections, real SOCK_DESTROY."""

from __future__ import annotations

import errno
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time

import pytest
from sockmon.core.errors import BadInput
from sockmon.core.states import ESTABLISHED
from sockmon.core.table.filter import parse_filter
from sockmon.core.table.snapshot import take_snapshot

SOCKMON = [sys.executable, "-m", "sockmon"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SOCK_DESTROY needs CAP_NET_ADMIN")

ECHO = """
import socket, sys, threading
lst = socket.create_server(("127.0.0.1", 0))
print(lst.getsockname()[1], flush=True)
def serve(c):
    with c:
        while True:
            try:
                data = c.recv(4096)
            except OSError as exc:
                print("server saw", exc.errno, flush=True)
                return
            if not data:
                return
            c.sendall(data)
while True:
    c, _ = lst.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def sockmon(*args: str, stdin=subprocess.DEVNULL, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*SOCKMON, *args], capture_output=True, text=True, timeout=timeout, stdin=stdin)


def filter_for_sport(sport: int, port: int) -> str:
    """Filter text matching only our client socket 127.0.0.1:sport → :port among every socket of the host (in
    whichever spelling the filter language takes: ``sport:N dport:P`` or ss's ``sport = :N and dport = :P``).
    The source port alone is not enough on a busy host: connect() reuses an ephemeral port towards other
    destinations, and TIME_WAITs of earlier connections keep theirs."""
    snap = take_snapshot(with_info=False)
    for text in (f"sport:{sport} dport:{port}", f"sport = :{sport} and dport = :{port}"):
        try:
            pred = parse_filter(text, snap.owner)
        except BadInput:
            continue
        if pred is not None and [(s.sport, s.dport) for s in snap.sockets if pred(s)] == [(sport, port)]:
            return text
    raise AssertionError("no filter spelling matches the one socket")


@pytest.fixture
def two_connections():
    """An echo server (child process) and two client connections to the same listener from this process."""
    server = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for c in clients:  # both really served
        c.sendall(b"hi")
        assert c.recv(2) == b"hi"
    yield port, clients, server
    for c in clients:
        c.close()
    server.kill()
    server.wait(5)


def established(port: int) -> dict[int, int]:
    """client source port → cookie, for our client sockets to ``port`` that are ESTABLISHED."""
    return {s.sport: s.cookie for s in take_snapshot(port=port, with_info=False).sockets
            if s.dport == port and s.state == ESTABLISHED}


@needs_root
def test_killing_one_of_two_connections_leaves_the_other_intact(two_connections):
    port, (victim, other), server = two_connections
    vport, oport = victim.getsockname()[1], other.getsockname()[1]
    before = established(port)
    assert set(before) == {vport, oport}
    text = filter_for_sport(vport, port)
    r = sockmon("kill", "--yes", *text.split())
    assert r.returncode == 0, r.stdout + r.stderr
    # the listing names the owner (this process) and both ends, then the result
    assert f"127.0.0.1:{vport} → 127.0.0.1:{port}" in r.stdout and f"pid={os.getpid()}" in r.stdout
    assert sum(line.startswith("killed") for line in r.stdout.splitlines()) == 1
    assert "killed 1 of 1 socket" in r.stderr
    # the killed side's owner sees ECONNABORTED on its next call
    with pytest.raises(OSError) as exc:
        victim.recv(16)
    assert exc.value.errno == errno.ECONNABORTED
    # the other connection between the same two endpoints is intact: same socket, still ESTABLISHED, data flows
    after = established(port)
    assert after == {oport: before[oport]}
    other.sendall(b"still here")
    got = b""
    while len(got) < 10:
        got += other.recv(16)
    assert got == b"still here"
    # the server's side of the killed connection got the RST
    assert server.stdout.readline().split() == ["server", "saw", str(errno.ECONNRESET)]


@needs_root
def test_json_reports_each_result(two_connections):
    port, (victim, _other), _server = two_connections
    vport = victim.getsockname()[1]
    text = filter_for_sport(vport, port)
    r = sockmon("kill", "--yes", "--json", *text.split())
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert (row["result"], row["errno"], row["reason"]) == ("killed", None, None)
    assert (row["state"], row["sport"], row["dport"], row["pid"]) == ("ESTABLISHED", vport, port, os.getpid())
    # asked again for the same socket record: nothing matches any more
    r = sockmon("kill", "--yes", "--json", *text.split())
    assert r.returncode == 1 and r.stdout == "" and "no socket matches" in r.stderr


def test_without_a_terminal_and_without_yes_nothing_is_killed(two_connections):
    port, (victim, _other), _server = two_connections
    vport = victim.getsockname()[1]
    r = sockmon("kill", *filter_for_sport(vport, port).split())
    assert r.returncode == 2
    assert f"127.0.0.1:{vport}" in r.stdout and "would kill 1 socket" in r.stdout
    assert r.stderr.strip().splitlines() == [
        "sockmon: refusing to kill 1 socket without confirmation: stdin is not a terminal (add --yes)"]
    assert vport in established(port)


@pytest.mark.parametrize("args, words", [
    ((), "needs a FILTER"),
    (("",), "needs a FILTER"),
    (("--yes",), "needs a FILTER"),
    (("--yes", "color:red"), "color"),
])
def test_empty_or_bad_filter_is_refused(two_connections, args, words):
    port, _clients, _server = two_connections
    r = sockmon("kill", *args)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert len(established(port)) == 2


def test_nothing_matching_exits_1():
    r = sockmon("kill", "--yes", "sport:1")
    assert r.returncode == 1 and "no socket matches sport:1" in r.stderr


def run_on_a_terminal(args: list[str], answer: bytes | int) -> tuple[int, str]:
    """Run ``sockmon ARGS`` with a pseudo-terminal as stdin/stdout/stderr, answer the question (bytes typed,
    or a signal number sent while it waits)."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execv(sys.executable, [*SOCKMON, *args])
    out = b""
    deadline = time.monotonic() + 30
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"[y/N]" in out:
            if isinstance(answer, int):
                os.kill(pid, answer)  # our own child, by pid
            else:
                os.write(fd, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


@needs_root
@pytest.mark.parametrize("answer, killed", [(b"y\n", True), (b"n\n", False), (b"\n", False)],
                         ids=["yes", "no", "enter"])
def test_asks_on_the_terminal(two_connections, answer, killed):
    port, (victim, _other), _server = two_connections
    vport = victim.getsockname()[1]
    code, out = run_on_a_terminal(["kill", *filter_for_sport(vport, port).split()], answer)
    assert "kill this socket? [y/N]" in out, out
    assert code == (0 if killed else 2), out
    assert (vport not in established(port)) is killed
    if not killed:
        assert "not confirmed" in out


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM),
                                         (signal.SIGHUP, -signal.SIGHUP)], ids=["INT", "TERM", "HUP"])
def test_a_signal_at_the_question_ends_it_and_kills_nothing(two_connections, sig, status):
    port, (victim, _other), _server = two_connections
    vport = victim.getsockname()[1]
    code, out = run_on_a_terminal(["kill", *filter_for_sport(vport, port).split()], sig)
    assert "[y/N]" in out and code == status and "Traceback" not in out, (code, out)
    assert vport in established(port)


AS_NOBODY = ("import os, sys\nfrom sockmon.cli import build_parser, main\nbuild_parser()\n"
             "import encodings.ascii, msgspec, psutil, sockmon.cli.kill, sockmon.cli.confirm, sockmon.cli.ls\n"
             "import sockmon.cli.output, sockmon.core.jsonout, sockmon.core.table.destroy\n"
             "import sockmon.core.table.filter, sockmon.core.table.owners, sockmon.core.table.snapshot\n"
             "os.setgroups([]); os.setgid(65534); os.setuid(65534); sys.exit(main())")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_non_root_gets_one_clear_line_and_nothing_is_killed(two_connections):
    port, (victim, _other), _server = two_connections
    vport = victim.getsockname()[1]
    r = subprocess.run([sys.executable, "-c", AS_NOBODY, "kill", "--yes", *filter_for_sport(vport, port).split()],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    failed = [line for line in r.stdout.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and f"127.0.0.1:{vport}" in failed[0]
    assert "EPERM: killing a socket needs root (CAP_NET_ADMIN in its network namespace)" in failed[0]
    assert "1 not killed: EPERM" in r.stderr
    assert vport in established(port)


@needs_root
def test_a_filter_on_the_owner_kills_that_process_side(two_connections):
    """``pid:N`` needs every socket's owner (the /proc scan): it picks the server's end of one connection."""
    port, (victim, other), server = two_connections
    vport = victim.getsockname()[1]
    r = sockmon("kill", "--yes", "--json", f"pid:{server.pid}", f"dport:{vport}")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["result"], x["pid"], x["sport"], x["dport"]) for x in rows] == [("killed", server.pid, port, vport)]
    assert server.stdout.readline().split() == ["server", "saw", str(errno.ECONNABORTED)]
    with pytest.raises(OSError) as exc:
        victim.recv(16)
    assert exc.value.errno == errno.ECONNRESET
    other.sendall(b"ok")
    assert other.recv(2) == b"ok"
