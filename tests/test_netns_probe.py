"""The kernel-side network-namespace filter of the tracepoint (core/table/btf.py, core/table/bpfnetns.py,
TransitionTracer(netns_inode=)): real BTF, real BPF, real sockets in a namespace this test creates."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest
from sockmon.core.netns import run_in_netns
from sockmon.core.table import bpfnetns
from sockmon.core.table.btf import INT, PTR, Btf, BtfError, netns_offsets
from sockmon.core.table.tracepoint import TransitionTracer, list_instances, tracing_available

needs_tracing = pytest.mark.skipif(not tracing_available()[0], reason="needs root and the tracepoint")
OUR_NS = os.stat("/proc/self/ns/net").st_ino


# -- BTF ------------------------------------------------------------------------------------------

def test_btf_reads_struct_members_of_the_running_kernel():
    btf = Btf.load()
    assert Btf.load() is btf  # parsed once per process
    assert len(btf) > 10_000
    # sock_common starts struct sock; skc_net is a possible_net_t (typedef struct { struct net *net; })
    assert btf.member_offset("sock", "__sk_common") == 0
    assert btf.member_offset("sock", "__sk_common.skc_net.net") == btf.member_offset("sock_common", "skc_net")
    assert btf.kind(btf.member_type("sock_common", "skc_net.net")) == PTR
    assert btf.member_offset("net", "ns.inum") == btf.member_offset("net", "ns") + \
        btf.member_offset("ns_common", "inum")
    inum = btf.member_type("ns_common", "inum")
    assert btf.kind(inum) == INT and btf.size(inum) == 4
    # a well-known UAPI layout, as a cross-check of the bit offsets: struct tcphdr's dest is at byte 2
    assert btf.member_offset("tcphdr", "dest") == 2 and btf.member_offset("tcphdr", "ack_seq") == 8
    # an anonymous union's member is found through it (struct sock_common: skc_addrpair / skc_daddr)
    assert btf.member_offset("sock_common", "skc_daddr") == 0
    offs = netns_offsets()
    assert offs.net == btf.member_offset("sock_common", "skc_net") and offs.inum > 0


def test_btf_names_what_is_missing():
    btf = Btf.load()
    with pytest.raises(BtfError, match="no struct or union 'no_such_struct_xyz'"):
        btf.member_offset("no_such_struct_xyz", "a")
    with pytest.raises(BtfError, match="struct sock_common has no member 'skc_nope'"):
        btf.member_offset("sock_common", "skc_nope")
    with pytest.raises(BtfError, match="struct net.ns has no member 'inode'"):
        btf.member_offset("net", "ns.inode")


def test_btf_rejects_malformed_data(tmp_path):
    with pytest.raises(BtfError, match="too short"):
        Btf(b"\x9f\xeb")
    with pytest.raises(BtfError, match="not BTF"):
        Btf(b"\0" * 64)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 1)
    with pytest.raises(BtfError, match="unknown BTF kind"):  # a type of kind 31
        Btf(hdr + struct.pack("<III", 0, 31 << 24, 0) + b"\0")
    with pytest.raises(BtfError, match="run past"):
        Btf(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 4000, 0, 1))
    with pytest.raises(BtfError, match="no kernel BTF"):
        Btf.load(str(tmp_path / "absent"))


# -- a test namespace and the same 4-tuple in it and in ours --------------------------------------------

@pytest.fixture
def testns():
    name = f"nsprobe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name, os.stat(f"/run/netns/{name}").st_ino
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sockets(port: int, cport: int) -> tuple[socket.socket, socket.socket]:
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(4)
    cli = socket.socket()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    cli.bind(("127.0.0.1", cport))
    return lst, cli


def _connection(lst: socket.socket, cli: socket.socket, port: int) -> None:
    """connect, accept, close both ends and the listener (whatever namespace the sockets are in)."""
    cli.connect(("127.0.0.1", port))
    srv, _ = lst.accept()
    cli.close()
    srv.close()
    lst.close()


def _same_tuple_in_both(nsname: str) -> tuple[int, int]:
    """The same connection 127.0.0.1:cport → 127.0.0.1:port in the test namespace and in ours, at once."""
    port, cport = _free_port(), _free_port()
    theirs = run_in_netns(nsname, lambda: _sockets(port, cport))  # sockets keep the namespace they were made in
    ours = _sockets(port, cport)
    _connection(*theirs, port)
    _connection(*ours, port)
    time.sleep(0.2)
    return port, cport


def _of(transitions, port: int) -> list[tuple]:
    return sorted((t.src, t.sport, t.dst, t.dport, t.old, t.new) for t in transitions
                  if port in (t.sport, t.dport))


@needs_tracing
def test_offsets_proven_on_a_real_socket(testns):
    """The BTF offsets, followed in the kernel from a socket's pointer, give /proc/self/ns/net's inode for
    our sockets and the test namespace's inode for its sockets: each counter counts exactly its own."""
    name, inode = testns
    with bpfnetns.NetnsCounter(inode) as theirs, bpfnetns.NetnsCounter(OUR_NS) as ours, \
            TransitionTracer() as every:
        assert theirs.count == 0  # nobody else uses the fresh namespace
        b_ours = ours.count
        port, cport = _same_tuple_in_both(name)
        seen = _of(every.read(), port)
        # the unfiltered tracepoint sees each transition twice (once per namespace), 4-tuples alike
        assert len(seen) >= 20 and all(seen[i] == seen[i + 1] for i in range(0, len(seen), 2))
        assert theirs.count == len(seen) // 2
        assert ours.count - b_ours >= len(seen) // 2
    assert inode != OUR_NS


@needs_tracing
@pytest.mark.parametrize("which", ["ours", "theirs"])
def test_netns_filtered_tracer_sees_only_its_namespace(testns, which):
    name, inode = testns
    want = OUR_NS if which == "ours" else inode
    with TransitionTracer(netns_inode=want) as filtered, TransitionTracer(reader="binary") as every, \
            TransitionTracer(reader="text") as text:
        assert filtered.netns_filtered and filtered.source == "binary" and "netns-filtered" in filtered.note
        assert not os.path.exists(filtered.path)  # no tracefs instance: the BPF ring buffer
        port, cport = _same_tuple_in_both(name)
        got = _of(filtered.read(), port)
        both = _of(every.read(), port)
        assert _of(text.read(), port) == both  # the unfiltered readers agree
    assert got and both == sorted(got + got)  # exactly one namespace's half of the doubled transitions
    keys = {(t[4], t[5]) for t in got}
    assert (10, 7) in keys and (7, 10) in keys and (2, 1) in keys  # listen, close, connect: the full story
    assert filtered.overruns == 0


@needs_tracing
def test_filtered_tracer_timestamps_and_port_filter(testns):
    name, _inode = testns
    with TransitionTracer(netns_inode=OUR_NS, port=1) as nobody, TransitionTracer(netns_inode=OUR_NS) as tr:
        t0 = time.monotonic()
        port, _ = _same_tuple_in_both(name)
        got = [t for t in tr.read() if port in (t.sport, t.dport)]
        assert nobody.read() == []  # the port filter is applied in the kernel too
    assert got and all(t0 - 0.01 <= t.ts <= time.monotonic() for t in got)  # CLOCK_MONOTONIC, as `mono`
    assert [t.ts for t in got] == sorted(t.ts for t in got)
    assert any(t.dwell_ms is not None for t in got)


@needs_tracing
def test_full_ring_is_counted_as_lost():
    with TransitionTracer(netns_inode=OUR_NS, buffer_kb=4) as tr:  # one page: ~50 records
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(64)
        port = lst.getsockname()[1]
        for _ in range(40):
            c = socket.create_connection(("127.0.0.1", port))
            s, _ = lst.accept()
            c.close()
            s.close()
        lst.close()
        time.sleep(0.2)
        assert tr.overruns > 0
        n = len(tr.read())
        assert 0 < n < 40 * 8


@needs_tracing
def test_fallback_when_the_filter_cannot_be_made(monkeypatch):
    def no_btf(*a, **kw):
        raise BtfError("no kernel BTF: /sys/kernel/btf/vmlinux: test")

    monkeypatch.setattr(bpfnetns, "netns_offsets", no_btf)
    with TransitionTracer(netns_inode=OUR_NS) as tr:
        assert not tr.netns_filtered and tr.source == "binary"
        assert "not netns-filtered: no kernel BTF" in tr.note
        assert tr.name in list_instances()  # the unfiltered tracepoint exactly as before
    with TransitionTracer(netns_inode=OUR_NS, reader="text") as tr:
        assert tr.source == "text" and "not netns-filtered: the text reader" in tr.note


def _bpf_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += "bpf" in target or "perf_event" in target
    return n


@needs_tracing
def test_nothing_left_after_close():
    before, inst = _bpf_fds(), set(list_instances())
    tr = TransitionTracer(netns_inode=OUR_NS)
    assert _bpf_fds() >= before + 4  # ring, lost-count map, program, perf event
    tr.close()
    tr.close()
    assert _bpf_fds() == before and set(list_instances()) <= inst
    assert tr.read() == [] and tr.overruns == 0


@needs_tracing
def test_watch_is_netns_filtered_and_ends_clean_on_sigterm(testns):
    name, _inode = testns
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "watch", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        lst, cli = run_in_netns(name, lambda: _sockets(port, _free_port()))
        _connection(lst, cli, port)  # another namespace: not shown
        time.sleep(0.5)
        ours = _sockets(port, _free_port())
        _connection(*ours, port)
        time.sleep(0.5)
        fds = os.listdir(f"/proc/{proc.pid}/fd")
        assert fds
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "not netns-filtered" not in err
    lines = [ln for ln in out.splitlines() if f":{port}" in ln]
    # our connection once: listen, connect, accept, close …; the test namespace's would double each line
    assert any("LISTEN" in ln for ln in lines)
    assert len([ln for ln in lines if "CLOSE -> LISTEN" in ln]) == 1, out
    assert not [n for n in list_instances() if n.startswith(f"sockmon-{proc.pid}-")]
