"""The one JSON encoder (sockmon.core.jsonout): shapes, round trips, agreement with `ss`, hostile text."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import msgspec
import pytest
from sockmon.core import jsonout
from sockmon.core.lab.events import Event, EventKind, make_event
from sockmon.core.records import Transition
from sockmon.core.states import ESTABLISHED, FIN_WAIT1, LISTEN, SYN_SENT
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.snapshot import take_snapshot

SOCKMON = [sys.executable, "-m", "sockmon"]


def no_raw_controls(data: bytes) -> bool:
    """JSON lines: no byte a terminal acts on, except the newline ending each line."""
    return not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", data)


# ----------------------------------------------------------------------------- engine events
def test_event_json_keeps_binary_bytes_as_hex_and_omits_unset_fields():
    ev = make_event(EventKind.BYTES_IN, nbytes=2, data=b"\xde\xad\xff", conn="client")
    line = jsonout.event_line(ev)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    out = json.loads(line)
    assert bytes.fromhex(out["hex"]) == b"\xde\xad\xff"
    assert out["data"] == "\u07ad\\xff"  # text for people: the undecodable byte as \xNN
    assert out["nbytes"] == 2 and out["kind"] == "bytes_in" and out["conn"] == "client"
    assert out["ts"] == round(ev.ts, 6)
    assert set(out) == {"ts", "time", "kind", "conn", "nbytes", "data", "hex"}  # detail "", state None...: left out
    assert list(out)[:3] == ["ts", "time", "kind"] and "wall" not in out
    assert out["time"] == datetime.fromtimestamp(ev.wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(ev.wall - time.time()) < 5 and out["time"].endswith("Z") and len(out["time"]) == 27


def test_events_are_frozen_named_and_untracked_by_the_gc():
    import gc

    ev = make_event(EventKind.STATE, state="ESTABLISHED", conn="client")
    assert not gc.is_tracked(ev) and ev.state == "ESTABLISHED" and ev.kind is EventKind.STATE
    with pytest.raises(AttributeError):
        ev.state = "CLOSE"  # type: ignore[misc]
    assert msgspec.structs.replace(ev, state="CLOSE").state == "CLOSE" and ev.state == "ESTABLISHED"


def test_event_json_is_lossless_and_inert_for_hostile_text():
    detail = "connect(\x1b]0;X\x07\x1b[2J[/x] é)"
    line = jsonout.event_line(make_event(EventKind.FAILED, detail, errno_name="ECONNREFUSED"))
    assert no_raw_controls(line)
    assert json.loads(line)["detail"] == detail  # escaped, not altered


def test_event_json_with_undecodable_text_is_written_not_raised():
    # a name from the command line or /proc, decoded with surrogateescape, holds lone surrogates
    out = json.loads(jsonout.event_line(make_event(EventKind.CALL, "connect(x\udcff)")))
    assert out["detail"] == "connect(x\\xff)"


def test_event_json_writes_every_field_an_event_carries():
    class WithPayload(Event, frozen=True, gc=False):  # like typed payload fields added to Event
        local: tuple[str, int] | None = None

    ev = WithPayload(EventKind.RETURNED, "connect()", 1.5, conn="client", local=("127.0.0.1", 40000))
    assert json.loads(jsonout.event_line(ev)) == {"ts": 1.5, "kind": "returned", "detail": "connect()",
                                                  "conn": "client", "local": ["127.0.0.1", 40000]}


# ----------------------------------------------------------------------------- transitions
def test_transition_lines_shape():
    trs = [Transition(12.123456789, socket.AF_INET, "127.0.0.1", 40000, "127.0.0.1", 80, SYN_SENT, ESTABLISHED,
                      "tracepoint", 0.1234567),
           Transition(13.0, socket.AF_INET6, "::1", 80, "::1", 40001, ESTABLISHED, FIN_WAIT1, "inferred", None, 7)]
    lines = jsonout.transition_lines(trs).splitlines()
    assert [json.loads(x) for x in lines] == [
        {"ts": 12.123457, "family": "inet", "src": "127.0.0.1", "sport": 40000, "dst": "127.0.0.1", "dport": 80,
         "old": "SYN_SENT", "new": "ESTABLISHED", "source": "tracepoint", "dwell_ms": 0.123},
        {"ts": 13.0, "family": "inet6", "src": "::1", "sport": 80, "dst": "::1", "dport": 40001,
         "old": "ESTABLISHED", "new": "FIN_WAIT1", "source": "inferred", "dwell_ms": None},
    ]
    assert jsonout.transition_lines([]) == b""


# ----------------------------------------------------------------------------- sockets
@pytest.fixture
def trio():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(7)
    cli = socket.create_connection(lst.getsockname())
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    srv, _ = lst.accept()
    yield lst, cli, srv
    for s in (lst, cli, srv):
        s.close()


def test_socket_lines_round_trip_a_real_snapshot(trio):
    lst, cli, _ = trio
    snap = take_snapshot(port=lst.getsockname()[1], owners=OwnerCache())
    socks = [s for s in snap.sockets if s.inode]  # ours (an older TIME_WAIT may share the port)
    pieces = list(jsonout.snapshot_lines(dataclasses.replace(snap, sockets=tuple(socks)), chunk=2))
    assert len(pieces) == 2 and all(p.endswith(b"\n") for p in pieces)  # 3 sockets in pieces of 2
    rows = [json.loads(x) for x in b"".join(pieces).splitlines()]
    assert len(rows) == len(socks) == 3
    for s, row in zip(socks, rows, strict=True):
        owner = snap.owner(s)
        assert row == {
            "family": "inet", "state": s.state_name, "src": s.src, "sport": s.sport, "dst": s.dst, "dport": s.dport,
            "recv_q": s.recv_q, "send_q": s.send_q,
            "timer": None if s.timer is None else {"name": s.timer.name, "expires_ms": s.timer.expires_ms,
                                                   "retrans": s.timer.retrans},
            "uid": s.uid, "inode": s.inode, "cookie": s.cookie,
            "pid": os.getpid(), "process": owner.name, "user": owner.user, "cong": s.cong,
            "tcp_info": msgspec.structs.asdict(s.tcp_info), "protocol": "tcp",
        }
    assert next(r for r in rows if r["sport"] == cli.getsockname()[1])["timer"]["name"] == "keepalive"
    assert next(r for r in rows if r["state"] == "LISTEN")["send_q"] == 7


def _ss_info(port: int) -> str:
    out = subprocess.run(["ss", "-tniH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 `ss`")
def test_ls_json_tcp_info_matches_ss(trio):
    lst, cli, srv = trio
    cli.sendall(b"x" * 1000)
    srv.recv(4096)
    cport = cli.getsockname()[1]
    deadline = time.monotonic() + 5
    while "unacked:" in _ss_info(cport) and time.monotonic() < deadline:  # the peer's (delayed) ACK
        time.sleep(0.02)
    r = subprocess.run([*SOCKMON, "ls", "--json", "--port", str(lst.getsockname()[1])],
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    row = next(x for x in map(json.loads, r.stdout.splitlines()) if x["sport"] == cport)
    info = row["tcp_info"]
    ss = _ss_info(cport)
    expect = {"mss": info["snd_mss"], "pmtu": info["pmtu"], "rcvmss": info["rcv_mss"], "advmss": info["advmss"],
              "cwnd": info["snd_cwnd"], "rcv_space": info["rcv_space"], "snd_wnd": info["snd_wnd"],
              "rto": info["rto"] // 1000, "bytes_acked": info["bytes_acked"], "segs_out": info["segs_out"]}
    got = {k: int(m.group(1)) for k in expect if (m := re.search(rf"\b{k}:(\d+)\b", ss))}
    assert got == expect, ss
    assert re.search(rf"wscale:{info['snd_wscale']},{info['rcv_wscale']}\b", ss), ss
    assert row["cong"] and row["cong"] in ss and row["state"] == "ESTABLISHED"


CHILD = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[2])), 0, 0, 0)  # PR_SET_NAME
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("name", [b"\x1b]0;X\x07\x1b[2J[/x]", b"\xff\xfe[bold]"], ids=["escapes", "not-utf8"])
def test_ls_json_writes_a_hostile_process_name_escaped(trio, name):
    lst = trio[0]
    port = lst.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(port), name.hex()], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        cport = int(child.stdout.readline())
        r = subprocess.run([*SOCKMON, "ls", "--json", "--port", str(port)], capture_output=True, timeout=20)
    finally:
        child.stdin.close()
        child.wait(10)
    assert r.returncode == 0, r.stderr
    assert no_raw_controls(r.stdout)
    row = next(x for x in map(json.loads, r.stdout.splitlines()) if x["sport"] == cport)
    assert row["pid"] == child.pid
    # lossless: the name as the kernel has it; bytes that are not UTF-8 as \xNN
    assert row["process"] == name.decode("utf-8", "backslashreplace")


def test_listen_row_of_ls_json_has_the_backlog(trio):
    lst = trio[0]
    r = subprocess.run([*SOCKMON, "ls", "--json", "--listening", "--port", str(lst.getsockname()[1])],
                       capture_output=True, timeout=20)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["state"], x["send_q"], x["tcp_info"]["state"]) for x in rows] == [("LISTEN", 7, LISTEN)]
