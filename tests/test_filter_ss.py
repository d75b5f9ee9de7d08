"""`sockmon ls FILTER` gives exactly the sockets `ss -tan FILTER` gives (the same 4-tuples and states), in a
private network namespace holding listeners (v4, v6, dual-stack), established connections (also v4-mapped),
TIME_WAIT, FIN_WAIT2 / CLOSE_WAIT, SYN_SENT / SYN_RECV (a full accept queue) and a UDP socket."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys

import pytest

SOCKMON = [sys.executable, "-m", "sockmon"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ss") is None,
                                reason="needs root (a network namespace) and ss")

# Runs inside the namespace: makes the sockets, prints "ready", holds them until stdin closes.
HOLDER = r"""
import socket, sys, time
keep = []
def listen(fam, addr, port, backlog=16, v6only=None):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((addr, port)); s.listen(backlog); keep.append(s); return s
def pair(fam, lst, addr, port):
    c = socket.socket(fam, socket.SOCK_STREAM); c.connect((addr, port)); a, _ = lst.accept()
    keep.extend((c, a)); return c, a
v4 = socket.AF_INET; v6 = socket.AF_INET6
redis4 = listen(v4, "127.0.0.1", 6379)
redis6 = listen(v6, "::1", 6379, v6only=1)
web = listen(v4, "0.0.0.0", 8080)
dual = listen(v6, "::", 9000, v6only=0)
ssh = listen(v4, "10.77.0.1", 2222)
for _ in range(2):
    pair(v4, redis4, "127.0.0.1", 6379)
pair(v6, redis6, "::1", 6379)
pair(v4, ssh, "10.77.0.1", 2222)
pair(v6, dual, "::ffff:127.0.0.1", 9000)       # v4-mapped addresses on both ends
pair(v4, dual, "127.0.0.1", 9000)              # a v4 client of the dual-stack listener (mapped on its side)
for _ in range(3):                             # TIME_WAIT on the client side: it closes first
    c, a = pair(v4, web, "127.0.0.1", 8080)
    keep.remove(c); keep.remove(a); c.close(); time.sleep(0.02); a.close()
c, a = pair(v4, web, "10.77.0.1", 8080)        # client FIN_WAIT2, server CLOSE_WAIT
keep.remove(c); c.close()
full = listen(v4, "127.0.0.1", 7000, backlog=0)  # a full accept queue: SYN_SENT / SYN_RECV clients
for _ in range(4):
    c = socket.socket(v4, socket.SOCK_STREAM); c.setblocking(False)
    try:
        c.connect(("127.0.0.1", 7000))
    except BlockingIOError:
        pass
    keep.append(c)
u = socket.socket(v4, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 5353)); keep.append(u)
time.sleep(0.3)
print("ready", flush=True)
sys.stdin.read()
"""

# ss expressions, as argv words (a shell would leave the quotes' contents as one word each)
EXPRESSIONS = [
    ["state", "established"],
    ["state", "listening"],
    ["state", "time-wait"],
    ["state", "connected"],
    ["state", "synchronized"],
    ["state", "bucket"],
    ["state", "big"],
    ["state", "fin-wait-2", "state", "close-wait"],
    ["exclude", "time-wait", "exclude", "listening"],
    ["dport = :6379 or sport = :6379"],
    ["state", "established", "( dport = :6379 or sport = :6379 )"],
    ["-o", "state", "established", "( dport = :ssh or sport = :redis )"],
    ["sport > :5000 and sport < :8000"],
    ["dport >= :1024 and dport le :9000"],
    ["sport", "gt", ":32767"],
    ["src 127.0.0.0/8"],
    ["dst 10.77.0.0/16"],
    ["dst", "10.77/16"],
    ["src [::1]"],
    ["dst ::1/128"],
    ["src 0.0.0.0"],
    ["src 0.0.0.0/8"],
    ["src *:9000"],
    ["src 127.0.0.1 or dst 127.0.0.1"],
    ["src 127.0.0.1:6379"],
    ["src [::ffff:127.0.0.1]"],
    ["not ( sport = :6379 or dport = :6379 )"],
    ["! src 127.0.0.1"],
    ["state", "connected", "not dst 127.0.0.1"],
    ["sport = :6379 or sport = :2222 and dport = :0"],  # ss: (a or b) and c
    ["\\( sport = :http-alt \\) || dport == :http-alt"],
    ["src inet:127.0.0.1 or sport = :9000"],  # inet: limits the whole listing to IPv4, as in ss
    ["state", "synchronized", "sport != :8080 && ! dport eq :8080"],
    ["sport < * or sport > :9000"],  # the kernel: * is 65535 (16 bits); ss itself: -1 — both must pass
    ["! src 0.0.0.0"],  # the kernel: [::1] is not 0.0.0.0 (family); ss itself: its first 32 bits are
    ["sport = :0x18eb or dport = :0x18eb"],  # 6379 as a C number, as ss reads it
    ["dst ::ffff:127.0.0.0/104"],
    ["state", "established", "state", "syn-sent", "dst 127.0.0.1:7000"],
    ["exclude", "all"],
]

SS_STATES = {"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV", "FIN-WAIT-1": "FIN_WAIT1",
             "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT", "UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT",
             "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING"}


def endpoint(text: str) -> tuple[str, int]:
    addr, _, port = text.rpartition(":")
    addr = addr.strip("[]").split("%")[0]
    if addr in ("*", "0.0.0.0", "::"):
        addr = "*"
    return addr, 0 if port == "*" else int(port)


def ss_rows(ns: str, words: list[str]) -> set[tuple]:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tanH", *[w for w in words if w != "-o"]],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    rows = set()
    for line in out.stdout.splitlines():
        f = line.split()
        if f[0].isdigit():  # one state asked for: ss leaves out the State column
            states = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "state"]
            assert len(states) == 1, (words, line)
            f.insert(0, {"established": "ESTAB", "listening": "LISTEN", "time-wait": "TIME-WAIT"}[states[0]])
        rows.add((SS_STATES[f[0]], *endpoint(f[3]), *endpoint(f[4])))
    return rows


def sockmon_rows(ns: str, words: list[str]) -> set[tuple]:
    opts = [w for w in words if w == "-o"]
    out = subprocess.run([*SOCKMON, "ls", "--netns", ns, "--json", "--no-owners", *opts, "--",
                          *[w for w in words if w != "-o"]], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = set()
    for line in out.stdout.splitlines():
        r = json.loads(line)
        src = "*" if r["src"] in ("0.0.0.0", "::") else r["src"]
        dst = "*" if r["dst"] in ("0.0.0.0", "::") else r["dst"]
        rows.add((r["state"], src, r["sport"], dst, r["dport"]))
    return rows


@pytest.fixture(scope="module")
def namespace():
    ns = f"filter-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    holder = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "lo"], check=True)
        holder = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", HOLDER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        yield ns
    finally:
        if holder is not None:
            holder.stdin.close()
            try:
                holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_the_namespace_has_every_kind_of_socket(namespace):
    every = ss_rows(namespace, [])
    states = {r[0] for r in every}
    assert {"LISTEN", "ESTABLISHED", "TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "SYN_SENT"} <= states, states
    assert any(r[1].startswith("::ffff:") for r in every) and any(r[1] == "::1" for r in every)
    assert sockmon_rows(namespace, []) == every
    udp = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-uanH"], capture_output=True, text=True)
    assert ":5353" in udp.stdout  # present, and never in the TCP lists above
    assert not any(r[2] == 5353 for r in every)


@pytest.mark.parametrize("words", EXPRESSIONS, ids=[" ".join(w) for w in EXPRESSIONS])
def test_ls_filter_gives_the_sockets_ss_gives(namespace, words):
    every = ss_rows(namespace, [])
    want, got = ss_rows(namespace, words), sockmon_rows(namespace, words)
    if want != got:  # a socket may have changed state between the two dumps: once more, both
        want, got = ss_rows(namespace, words), sockmon_rows(namespace, words)
    assert got == want, f"only sockmon: {sorted(got - want)}  only ss: {sorted(want - got)}"
    if words != ["exclude", "all"]:  # the expressions select something, and not everything
        assert want and want != every, (words, want)


def test_bad_filter_is_one_line_and_exit_2(namespace):
    out = subprocess.run([*SOCKMON, "ls", "--netns", namespace, "dport", ">", ":x!y"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "':x!y' at column 9" in out.stderr, out.stderr
