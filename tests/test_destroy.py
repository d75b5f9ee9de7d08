"""SOCK_DESTROY of one socket (core/table/destroy.py) on real loopback sockets: what it does to each
state on this kernel, that the cookie keeps every other socket safe, and the reasons when it cannot."""

from __future__ import annotations

import errno
import os
import secrets
import socket
import struct
import subprocess
import threading
import time

import pytest
from msgspec.structs import replace
from sockmon.core.netns import enter_netns_here
from sockmon.core.states import ESTABLISHED, LISTEN, TIME_WAIT
from sockmon.core.table.destroy import build_destroy_request, destroy, destroy_many, reason
from sockmon.core.table.snapshot import take_snapshot

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SOCK_DESTROY needs CAP_NET_ADMIN")


def rows(port: int, netns=None, **match):
    snap = take_snapshot(port=port, with_info=False, netns=netns)
    return [s for s in snap.sockets if all(getattr(s, k) == v for k, v in match.items())]


def one(port: int, netns=None, **match):
    found = rows(port, netns, **match)
    assert len(found) == 1, found
    return found[0]


def recv_errno(sock: socket.socket) -> int | None:
    sock.settimeout(5)
    try:
        sock.recv(16)
    except OSError as exc:
        return exc.errno
    return None


def test_request_layout_names_the_socket_exactly():
    """Ports big-endian, addresses padded to 16 bytes, cookie as two host-order u32 (low half first)."""
    lst = socket.create_server(("127.0.0.1", 0))
    try:
        s = one(lst.getsockname()[1], state=LISTEN)
        req = build_destroy_request(replace(s, cookie=0x1122334455667788, ifindex=3))
        family, proto, _ext, _pad, _states = struct.unpack("=BBBBI", req[:8])
        sport, dport, src, dst = struct.unpack(">HH16s16s", req[8:44])
        ifindex, lo, hi = struct.unpack("=III", req[44:56])
        assert len(req) == 56
        assert (family, proto, sport, dport) == (socket.AF_INET, socket.IPPROTO_TCP, s.sport, 0)
        assert src == socket.inet_aton("127.0.0.1") + bytes(12) and dst == bytes(16)
        assert (ifindex, lo, hi) == (3, 0x55667788, 0x11223344)
    finally:
        lst.close()


def test_a_record_without_cookie_is_refused():
    """/proc/net/tcp records have no cookie: the kernel would take any socket with those ends."""
    lst = socket.create_server(("127.0.0.1", 0))
    try:
        s = replace(one(lst.getsockname()[1], state=LISTEN), cookie=0)
        r = destroy(s)
        assert not r.ok and "cookie" in r.reason
        assert one(lst.getsockname()[1], state=LISTEN)  # untouched
    finally:
        lst.close()


@needs_root
def test_established_owner_sees_econnaborted_and_peer_a_reset():
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lst.accept()
    try:
        target = one(port, sport=cli.getsockname()[1])
        r = destroy(target)
        assert r.ok and r.errno is None and r.socket is target
        assert recv_errno(cli) == errno.ECONNABORTED
        assert recv_errno(srv) == errno.ECONNRESET
        assert rows(port, state=ESTABLISHED) == []
        again = destroy(target)
        assert not again.ok and again.gone and again.errno == errno.ENOENT and "already gone" in again.reason
    finally:
        for s in (cli, srv, lst):
            s.close()


@needs_root
def test_another_cookie_with_the_same_ends_is_never_touched():
    """A stale record (same 4-tuple, other cookie) must not kill the socket that has those ends now."""
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lst.accept()
    try:
        live = one(port, sport=cli.getsockname()[1])
        r = destroy(replace(live, cookie=live.cookie + 1))
        assert not r.ok and r.gone
        assert one(port, sport=cli.getsockname()[1]).cookie == live.cookie
        cli.sendall(b"x")
        assert srv.recv(1) == b"x"
    finally:
        for s in (cli, srv, lst):
            s.close()


@needs_root
def test_listener_is_closed_and_its_queue_reset():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))  # never accepted
    try:
        time.sleep(0.05)
        r = destroy(one(port, state=LISTEN))
        assert r.ok, r.reason
        with pytest.raises(OSError) as exc:
            lst.accept()
        assert exc.value.errno == errno.EINVAL
        assert recv_errno(queued) == errno.ECONNRESET
        assert rows(port, state=LISTEN) == []
    finally:
        queued.close()
        lst.close()


@needs_root
def test_every_member_of_a_reuseport_group_can_be_killed():
    """The kernel's lookup picks one member of a SO_REUSEPORT group by a hash of the request's peer:
    destroy retries with other peer ports until it picks the wanted one (kernel-facts: SOCK_DESTROY)."""
    group = []
    port = 0
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        port = s.getsockname()[1]
        group.append(s)
    try:
        members = rows(port, state=LISTEN)
        assert len(members) == 4
        results = destroy_many(members)
        assert [r.ok for r in results] == [True] * 4, [r.reason for r in results]
        assert rows(port, state=LISTEN) == []
    finally:
        for s in group:
            s.close()


@needs_root
def test_time_wait_entry_is_removed():
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lst.accept()
    cport = cli.getsockname()[1]
    cli.close()  # the active closer ends in TIME_WAIT
    srv.recv(1)
    srv.close()
    try:
        deadline = time.monotonic() + 5
        while not rows(port, state=TIME_WAIT, sport=cport, dport=port) and time.monotonic() < deadline:
            time.sleep(0.02)
        tw = one(port, state=TIME_WAIT, sport=cport, dport=port)
        assert tw.inode == 0
        assert destroy(tw).ok
        assert rows(port, state=TIME_WAIT, sport=cport, dport=port) == []
    finally:
        lst.close()


@needs_root
def test_kills_in_a_namespace_and_not_in_ours():
    name = f"kill-opts-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    held: list[socket.socket] = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)

        def make() -> None:  # a thread that lives in the namespace creates the sockets there
            enter_netns_here(name)
            lst = socket.create_server(("127.0.0.1", 0))
            cli = socket.create_connection(lst.getsockname())
            srv, _ = lst.accept()
            held.extend((lst, cli, srv))

        th = threading.Thread(target=make)
        th.start()
        th.join()
        lst, cli, srv = held
        port = lst.getsockname()[1]
        target = one(port, netns=name, sport=cli.getsockname()[1])
        # asked in our own namespace, the kernel finds no such socket
        assert destroy(target).errno == errno.ENOENT
        assert destroy(target, netns=name).ok
        assert recv_errno(cli) == errno.ECONNABORTED
    finally:
        for s in held:
            s.close()
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_reasons_are_one_line_each():
    for code, words in ((errno.EOPNOTSUPP, "CONFIG_INET_DIAG_DESTROY"), (errno.EPERM, "root"),
                        (errno.EACCES, "CAP_NET_ADMIN"), (errno.ENOENT, "already gone")):
        text = reason(code)
        assert words in text and "\n" not in text and text.startswith(errno.errorcode[code])
