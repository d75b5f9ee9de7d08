"""`sockmon opts` end to end: another process's socket options read and changed from outside it (pidfd_getfd),
checked against what that process itself reads with getsockopt and against `ss -tno`."""

from __future__ import annotations

import array
import json
import os
import re
import socket
import subprocess
import sys

import psutil
import pytest
from sockmon.core.errors import BadInput
from sockmon.core.lab.options import Keepalive, Linger, OptionChanges, apply_changes, parse_set, read_options
from test_cli_kill import run_on_a_terminal

SOCKMON = [sys.executable, "-m", "sockmon"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="pidfd_getfd of another process needs root")

# The child sets its own options, says where its socket is, then answers on request: "get" prints what it
# reads with getsockopt (JSON), "ping" sends one byte and prints the byte that comes back.
CHILD = r"""
import json, os, socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 7))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 600)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 4000)
print(json.dumps({"fd": s.fileno(), "port": s.getsockname()[1],
                  "inode": os.fstat(s.fileno()).st_ino}), flush=True)
for line in sys.stdin:
    if line.strip() == "get":
        on, secs = struct.unpack("ii", s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
        print(json.dumps({
            "linger": [on, secs], "keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "intvl": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "cnt": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "nodelay": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            "user_timeout": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            "sndbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)}), flush=True)
    elif line.strip() == "ping":
        s.sendall(b"?")
        print(s.recv(1).decode(), flush=True)
"""


def sockmon(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*SOCKMON, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Child:
    def __init__(self) -> None:
        self.lst = socket.create_server(("127.0.0.1", 0))
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(self.lst.getsockname()[1])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.pid, self.fd, self.port, self.inode = self.proc.pid, info["fd"], info["port"], info["inode"]
        self.peer, _ = self.lst.accept()
        self.name = psutil.Process(self.pid).name()

    def ask(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def own_view(self) -> dict:
        return json.loads(self.ask("get"))

    def ping(self) -> bool:
        """One byte there and back over the child's connection."""
        self.proc.stdin.write("ping\n")
        self.proc.stdin.flush()
        assert self.peer.recv(1) == b"?"
        self.peer.sendall(b"!")
        return self.proc.stdout.readline().strip() == "!"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(5)
        self.peer.close()
        self.lst.close()


@pytest.fixture
def child():
    c = Child()
    yield c
    c.close()


def ss_keepalive_timer(port: int) -> float | None:
    """Seconds left on the keepalive timer `ss -tno` shows for the socket with local port ``port``.

    ss prints a timer as [Nmin][S(sec|.)][MMMms]: ``4.484ms`` is 4 s 484 ms, ``9min59sec`` …"""
    out = subprocess.run(["ss", "-tnoH", "sport", "=", f":{port}"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"timer:\(keepalive,([^,]+),", out)
    if m is None:
        return None
    t = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?", m.group(1))
    assert t is not None, m.group(1)
    mins, secs, ms = (int(g) if g else 0 for g in t.groups())
    return mins * 60 + secs + ms / 1000


@needs_root
def test_opts_reads_what_the_child_set_and_a_change_is_seen_by_the_child_and_ss(child):
    own = child.own_view()
    r = sockmon("opts", "--pid", str(child.pid), "--fd", str(child.fd), "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert (row["pid"], row["fd"], row["inode"], row["state"], row["sport"]) == (
        child.pid, child.fd, child.inode, "ESTABLISHED", child.port)
    opts = row["options"]
    assert opts["linger"] == {"enabled": True, "seconds": 7}
    assert opts["keepalive"] == {"enabled": True, "idle": 600, "intvl": 30, "cnt": 4}
    assert (opts["nodelay"], opts["user_timeout_ms"]) == (True, 4000)
    assert (opts["sndbuf"], opts["rcvbuf"]) == (own["sndbuf"], own["rcvbuf"])
    # --inode finds the same socket through the owner lookup
    by_inode = json.loads(sockmon("opts", "--inode", str(child.inode), "--json").stdout)
    assert (by_inode["pid"], by_inode["fd"], by_inode["options"]) == (child.pid, child.fd, opts)
    assert 550 < ss_keepalive_timer(child.port) <= 600

    r = sockmon("opts", "--pid", str(child.pid), "--fd", str(child.fd), "--set", "keepalive=5,2,3",
                "--set", "linger=0", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["before"] == opts
    assert row["options"]["keepalive"] == {"enabled": True, "idle": 5, "intvl": 2, "cnt": 3}
    assert row["options"]["linger"] == {"enabled": True, "seconds": 0}
    assert (row["options"]["nodelay"], row["options"]["user_timeout_ms"]) == (True, 4000)  # untouched
    # the child's own getsockopt sees the change
    own = child.own_view()
    assert (own["linger"], own["keepalive"], own["idle"], own["intvl"], own["cnt"]) == ([1, 0], 1, 5, 2, 3)
    assert (own["nodelay"], own["user_timeout"]) == (1, 4000)
    # so does ss -o: the keepalive timer now runs from 5 s
    assert 0 < ss_keepalive_timer(child.port) <= 5
    # and the connection still works
    assert child.ping()


@needs_root
def test_text_output_and_the_other_settings(child):
    r = sockmon("opts", "--inode", str(child.inode), "--set", "nodelay=off", "--set", "user-timeout=0",
                "--set", "keepalive=off", "--yes")
    assert r.returncode == 0, r.stderr
    assert "python" in r.stdout and f"pid {child.pid}" in r.stdout and f"fd {child.fd}" in r.stdout
    assert "changed (keepalive off; nodelay off; user-timeout 0 ms (system default)); the kernel reads back:" \
        in r.stdout
    after = r.stdout.split("the kernel reads back:")[1]
    assert re.search(r"SO_KEEPALIVE\s+off \(timers kept: idle 600 s, intvl 30 s, cnt 4\)", after), after
    assert re.search(r"TCP_NODELAY\s+off", after) and re.search(r"TCP_USER_TIMEOUT\s+0 ", after)
    own = child.own_view()
    assert (own["keepalive"], own["idle"], own["nodelay"], own["user_timeout"]) == (0, 600, 0, 0)
    assert ss_keepalive_timer(child.port) is None
    # keepalive=on turns it back on with the timers the socket has
    r = sockmon("opts", "--pid", str(child.pid), "--fd", str(child.fd), "--set", "keepalive=on", "--yes",
                "--json")
    assert json.loads(r.stdout)["options"]["keepalive"] == {"enabled": True, "idle": 600, "intvl": 30, "cnt": 4}
    assert child.ping()


@needs_root
def test_no_change_without_a_terminal_and_without_yes(child):
    r = sockmon("opts", "--pid", str(child.pid), "--fd", str(child.fd), "--set", "linger=0")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"sockmon: refusing to change the socket options of {child.name} (pid {child.pid}, user root) without "
        "confirmation: stdin is not a terminal (add --yes)"]
    assert "SO_LINGER         on, 7 s" in r.stdout  # what it has now was shown
    assert child.own_view()["linger"] == [1, 7]


@needs_root
@pytest.mark.parametrize("answer, changed", [(b"y\n", True), (b"n\n", False)], ids=["yes", "no"])
def test_asks_on_the_terminal_naming_the_process(child, answer, changed):
    code, out = run_on_a_terminal(["opts", "--pid", str(child.pid), "--fd", str(child.fd), "--set",
                                   "nodelay=off"], answer)
    question = f"change the socket of {child.name} (pid {child.pid}, user root), fd {child.fd}: nodelay off? [y/N]"
    assert question in out, out
    assert code == (0 if changed else 2), out
    assert child.own_view()["nodelay"] == (0 if changed else 1)


@pytest.mark.parametrize("setting, words", [
    ("linger=x", "bad linger"),
    ("linger=-1", "bad linger"),
    ("keepalive=1,2", "IDLE,INTVL,CNT"),
    ("keepalive=0,1,1", "bad keepalive idle 0"),
    ("keepalive=1,1,200", "bad keepalive cnt 200"),
    ("nodelay=maybe", "on or off"),
    ("user-timeout=-5", "user-timeout"),
    ("user-timeout=9999999999", "0-2147483647"),
    ("mss=1000", "unknown option 'mss'"),
    ("linger", "expected NAME=VALUE"),
])
def test_bad_set_values_are_one_line_and_exit_2(setting, words):
    # checked before anything is looked up: pid 1 fd 0 is never touched
    r = sockmon("opts", "--pid", "1", "--fd", "0", "--set", setting, "--yes")
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_the_same_option_twice_is_bad_input():
    with pytest.raises(BadInput, match="twice"):
        parse_set(["linger=0", "linger=off"])


def test_time_wait_has_no_owner_and_no_options():
    """A TIME_WAIT socket has inode 0 (ls --json says so): opts explains there is nothing to read."""
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    cport, lport = cli.getsockname()[1], lst.getsockname()[1]
    cli.close()
    srv.recv(1)
    srv.close()
    lst.close()
    rows = [json.loads(x) for x in sockmon("ls", "--json", "--port", str(cport)).stdout.splitlines()]
    # (older TIME_WAITs may share the port number: ours has the whole 4-tuple)
    tw = [x for x in rows if x["state"] == "TIME_WAIT" and (x["sport"], x["dport"]) == (cport, lport)]
    assert len(tw) == 1 and tw[0]["inode"] == 0
    r = sockmon("opts", "--inode", str(tw[0]["inode"]))
    assert r.returncode == 2 and "TIME_WAIT" in r.stderr and "no options" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@needs_root
def test_a_socket_held_by_no_process_has_no_owner():
    """A socket in flight (sent with SCM_RIGHTS, not yet received, sender's fd closed) has an inode but no
    process holds it."""
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    inode = os.fstat(cli.fileno()).st_ino
    a, b = socket.socketpair()
    try:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [cli.fileno()]))])
        cli.close()
        r = sockmon("opts", "--inode", str(inode))
        assert r.returncode == 1, r.stderr
        assert f"socket inode {inode} (ESTABLISHED" in r.stderr and "held by no process" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        for s in (a, b, srv, lst):
            s.close()


def test_unknown_inode_not_a_socket_and_not_tcp(tmp_path):
    r = sockmon("opts", "--inode", "4000000000")
    assert r.returncode == 1 and "no TCP socket with inode 4000000000" in r.stderr
    path = tmp_path / "f"
    path.write_text("x")
    with open(path) as fh, socket.socket(socket.AF_UNIX) as unix:
        for fd, words, code in ((fh.fileno(), "is not a socket", 2), (unix.fileno(), "UNIX socket, not TCP", 2),
                                (999, f"process {os.getpid()} has no fd 999", 1)):
            r = subprocess.run([*SOCKMON, "opts", "--pid", str(os.getpid()), "--fd", str(fd)], capture_output=True,
                               text=True, timeout=30, pass_fds=(fd,) if fd != 999 else ())
            assert r.returncode == code and words in r.stderr, r.stderr
    r = sockmon("opts", "--pid", str(os.getpid()))
    assert r.returncode == 2 and "--pid needs --fd" in r.stderr


AS_NOBODY = ("import os, sys\nfrom sockmon.cli import build_parser, main\nbuild_parser()\n"
             "import encodings.ascii, msgspec, psutil, sockmon.cli.opts, sockmon.cli.confirm, sockmon.cli.ls\n"
             "import sockmon.cli.output, sockmon.core.jsonout, sockmon.core.lab.foreign, sockmon.core.lab.options\n"
             "import sockmon.core.table.owners, sockmon.core.table.snapshot\n"
             "os.setgroups([]); os.setgid(65534); os.setuid(65534); sys.exit(main())")


@needs_root
def test_non_root_gets_one_clear_line(child):
    for args in (["--pid", str(child.pid), "--fd", str(child.fd)], ["--inode", str(child.inode)]):
        r = subprocess.run([sys.executable, "-c", AS_NOBODY, "opts", *args], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "root" in r.stderr, r.stderr


def test_apply_changes_on_our_own_socket():
    """The core the command and the Options screen share: each change, then everything read back."""
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    try:
        got = apply_changes(cli, parse_set(["linger=3", "keepalive=60,10,5", "nodelay=on", "user-timeout=2500"]))
        assert got == read_options(cli)
        assert got.linger == Linger(True, 3) and got.keepalive == Keepalive(True, 60, 10, 5)
        assert got.nodelay and got.user_timeout_ms == 2500
        assert apply_changes(cli, OptionChanges(keepalive=False)).keepalive == Keepalive(False, 60, 10, 5)
        assert apply_changes(cli, OptionChanges(keepalive=True)).keepalive == Keepalive(True, 60, 10, 5)
        assert not OptionChanges() and OptionChanges().describe() == "nothing"
    finally:
        for s in (cli, srv, lst):
            s.close()
