"""The sock_diag decoder against hand-built, truncated, oversized and garbage messages (hypothesis).

It must raise a clear error (NetlinkFormatError / OSError for NLMSG_ERROR) or skip the bad message:
never hang, never hand back a half-decoded socket as if it were whole.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sockmon.core.records import Socket, Timer
from sockmon.core.states import LISTEN
from sockmon.core.table import diag, netlink
from sockmon.core.table.netlink import NetlinkFormatError
from sockmon.core.tcpinfo import TCP_INFO_KEPT, TCP_INFO_SIZE, decode_tcp_info

SEQ = 7


def nla(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + bytes(netlink.align4(len(raw)) - len(raw))


def diag_msg(*, family=socket.AF_INET, state=1, timer=0, retrans=0, sport=1234, dport=80,
             src="127.0.0.1", dst="127.0.0.2", ifindex=0, cookie=42, expires=0, rq=0, wq=0, uid=0,
             inode=99, info: bytes | None = None, cong: bytes | None = None, seq=SEQ) -> bytes:
    def raw(a):
        b = socket.inet_pton(family, a)
        return b + bytes(16 - len(b))

    body = (struct.pack("=BBBB", family, state, timer, retrans) + struct.pack(">HH", sport, dport)
            + raw(src) + raw(dst) + struct.pack("=IQIIIII", ifindex, cookie, expires, rq, wq, uid, inode))
    assert len(body) == diag.INET_DIAG_MSG_SIZE
    attrs = (nla(diag.INET_DIAG_INFO, info) if info is not None else b"") + (
        nla(diag.INET_DIAG_CONG, cong) if cong is not None else b"")
    return netlink.build_message(diag.SOCK_DIAG_BY_FAMILY, netlink.NLM_F_MULTI, body + attrs, seq)


def done_msg(seq=SEQ) -> bytes:
    return netlink.build_message(netlink.NLMSG_DONE, netlink.NLM_F_MULTI, struct.pack("=i", 0), seq)


def error_msg(errno_: int, seq=SEQ) -> bytes:
    return netlink.build_message(netlink.NLMSG_ERROR, 0, struct.pack("=i", -errno_) + bytes(16), seq)


def parse(data: bytes) -> tuple[list[Socket], bool]:
    out: list[Socket] = []
    done = diag.parse_datagram(data, SEQ, out)
    return out, done


INFO = bytes(range(256))[:TCP_INFO_SIZE]


def test_hand_built_messages_decode_exactly():
    data = (diag_msg(state=10, sport=80, dport=0, dst="0.0.0.0", rq=3, wq=128, inode=5, info=INFO,
                     cong=b"cubic\0")
            + diag_msg(family=socket.AF_INET6, src="::1", dst="fe80::1", state=6, timer=3, expires=59000,
                       retrans=0, inode=0, cookie=2**63 + 5)
            + diag_msg(seq=SEQ + 1)  # another request's message: skipped
            + done_msg())
    socks, done = parse(data)
    assert done
    assert socks == [
        Socket(2, 10, "127.0.0.1", 80, "0.0.0.0", 0, 3, 128, None, 0, 5, 42, 0, INFO[:TCP_INFO_KEPT], "cubic"),
        Socket(10, 6, "::1", 1234, "fe80::1", 80, 0, 0, Timer(3, 59000, 0), 0, 0, 2**63 + 5, 0, None, None),
    ]
    assert socks[0].tcp_info.snd_wscale == INFO[6] & 15 and socks[0].tcp_info.rcv_wscale == INFO[6] >> 4
    assert socks[0].tcp_info == decode_tcp_info(INFO) and socks[0].rtt == socks[0].tcp_info.rtt


def test_nlmsg_error_raises_oserror_with_errno():
    with pytest.raises(OSError) as exc:
        parse(diag_msg() + error_msg(1))
    assert exc.value.errno == 1 and "EPERM" in str(exc.value)


def test_short_tcp_info_from_an_older_kernel_reads_missing_fields_as_zero():
    socks, _ = parse(diag_msg(info=INFO[:104]) + done_msg())
    assert socks[0].tcp_info_bytes == INFO[:104] + bytes(TCP_INFO_KEPT - 104)
    assert socks[0].tcp_info == decode_tcp_info(INFO[:104])
    assert socks[0].tcp_info.rcv_wnd == 0 and socks[0].tcp_info.rtt == INFO[68] | INFO[69] << 8 | INFO[70] << 16 | INFO[71] << 24


def test_longer_tcp_info_from_a_newer_kernel_is_cut():
    socks, _ = parse(diag_msg(info=INFO + b"\xff" * 40) + done_msg())
    assert socks[0].tcp_info_bytes == INFO[:TCP_INFO_KEPT] and socks[0].tcp_info == decode_tcp_info(INFO)


def _check_whole(socks: list[Socket], reference: list[Socket]) -> None:
    """Sockets returned from damaged input are exactly a prefix of the intact decode."""
    assert socks == reference[:len(socks)]


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(0, 65535), st.booleans(), st.binary(max_size=300)),
                min_size=1, max_size=6), st.data())
def test_truncated_datagrams_never_yield_partial_sockets(specs, data):
    msgs = [diag_msg(state=s, sport=p, family=socket.AF_INET6 if v6 else socket.AF_INET,
                     src="::1" if v6 else "127.0.0.1", dst="::2" if v6 else "127.0.0.2",
                     info=info or None) for s, p, v6, info in specs]
    whole = b"".join(msgs) + done_msg()
    reference, done = parse(whole)
    assert done and len(reference) == len(msgs)
    cut = data.draw(st.integers(0, len(whole) - 1))
    try:
        socks, done = parse(whole[:cut])
    except NetlinkFormatError:
        return
    assert not done
    _check_whole(socks, reference)
    # only a cut exactly on a message boundary can parse
    bounds = {0}
    pos = 0
    for m in msgs:
        pos += len(m)
        bounds.add(pos)
    assert cut in bounds


@settings(max_examples=300, deadline=500)
@given(st.integers(1, 5), st.integers(0, 0xFFFFFFFF), st.integers(0, 4))
def test_oversized_or_undersized_lengths_raise(n, bad_len, which):
    msgs = [diag_msg(sport=1000 + i, info=INFO, cong=b"cubic\0") for i in range(n)]
    reference, _ = parse(b"".join(msgs) + done_msg())
    idx = which % n
    m = bytearray(msgs[idx])
    true_len = len(m)
    if bad_len == true_len:
        bad_len += 4
    struct.pack_into("=I", m, 0, bad_len)
    msgs[idx] = bytes(m)
    data = b"".join(msgs)  # no DONE: a bad length must not swallow it and say "done"
    try:
        socks, done = parse(data)
    except NetlinkFormatError:
        return
    # Accepted only when the new length still frames well-formed attributes: a shorter one that cuts
    # after a whole attribute, or a longer one whose extra bytes happen to read as attributes (the
    # next message's header is a valid 352-byte attribute of type 0). Either way every socket
    # returned is one of the intact ones, whole — never a mix of two messages.
    assert not done
    assert all(s in reference for s in socks)


@settings(max_examples=300, deadline=500)
@given(st.integers(1, 3), st.integers(0, 2), st.integers(0, 0xFFFF))
def test_bad_attribute_lengths_raise(n, which, alen):
    msgs = [bytearray(diag_msg(sport=2000 + i, info=INFO, cong=b"bbr\0")) for i in range(n)]
    m = msgs[which % n]
    off = 16 + diag.INET_DIAG_MSG_SIZE
    real = struct.unpack_from("=H", m, off)[0]
    struct.pack_into("=H", m, off, alen)
    data = b"".join(bytes(x) for x in msgs) + done_msg()
    try:
        socks, _ = parse(data)
    except NetlinkFormatError:
        assert alen < 4 or alen != real
        return
    # accepted: the attribute still fits its message; every socket is whole
    assert len(socks) == n
    for s in socks:
        assert isinstance(s, Socket) and s.sport in range(2000, 2000 + n)


@settings(max_examples=500, deadline=500)
@given(st.binary(max_size=2000))
def test_garbage_never_hangs_and_yields_only_whole_sockets(blob):
    out: list[Socket] = []
    try:
        diag.parse_datagram(blob, None, out)
    except (NetlinkFormatError, OSError):
        pass
    for s in out:
        assert isinstance(s, Socket)
        assert s.tcp_info_bytes is None or len(s.tcp_info_bytes) == TCP_INFO_KEPT


@settings(max_examples=200, deadline=500)
@given(st.binary(max_size=600))
def test_garbage_after_a_valid_message(blob):
    data = diag_msg(sport=4242) + blob
    out: list[Socket] = []
    try:
        diag.parse_datagram(data, SEQ, out)
    except (NetlinkFormatError, OSError):
        pass
    assert out[0].sport == 4242  # the valid message before the garbage decoded whole


def test_iter_messages_rejects_zero_length_instead_of_looping():
    with pytest.raises(NetlinkFormatError):
        list(netlink.iter_messages(struct.pack("=IHHII", 0, 20, 0, 0, 0)))
    with pytest.raises(NetlinkFormatError):
        list(netlink.iter_messages(os.urandom(7)))


def test_request_layout():
    req = diag.build_request(socket.AF_INET6, states=diag.states_mask([10]), with_info=True, port=8080)
    fam, proto, ext, _pad, states = struct.unpack_from("=BBBBI", req)
    assert (fam, proto, ext, states) == (10, 6, 0x0A, 1 << 10)
    assert len(req) == 56 + 4 + 20
    alen, atype = struct.unpack_from("=HH", req, 56)
    assert (alen, atype) == (24, diag.INET_DIAG_REQ_BYTECODE)
    assert diag.states_mask([3]) == (1 << 3) | (1 << 12)  # SYN_RECV includes request sockets
    with pytest.raises(ValueError):
        diag.states_mask([0])


# ---------------------------------------------------------------- fast path ≡ strict slow path
def _slow_only(datagrams: list[bytes]) -> list[Socket]:
    out: list[Socket] = []
    saved = diag._MAX_LAYOUTS
    diag._MAX_LAYOUTS = 0  # never learn a layout: every message takes the strict path
    try:
        p = diag.DumpParser(SEQ)
        for d in datagrams:
            p.feed(d, out)
    finally:
        diag._MAX_LAYOUTS = saved
    return out


def _fast(datagrams: list[bytes]) -> list[Socket]:
    out: list[Socket] = []
    p = diag.DumpParser(SEQ)
    for d in datagrams:
        p.feed(d, out)
    return out


msg_specs = st.lists(st.tuples(
    st.sampled_from([1, 8, 10]),  # state
    st.integers(0, 65535),  # sport
    st.booleans(),  # v6
    st.sampled_from([None, 104, 248, 280]),  # tcp_info length
    st.sampled_from([None, b"cubic\0", b"bbr\0"]),
    st.integers(0, 4),  # timer
), min_size=1, max_size=40)


@settings(max_examples=150, deadline=1000)
@given(msg_specs, st.integers(1, 5))
def test_fast_path_decodes_exactly_like_the_strict_path(specs, ndgrams):
    msgs = [diag_msg(state=s, sport=p, family=socket.AF_INET6 if v6 else socket.AF_INET,
                     src="::1" if v6 else "127.0.0.1", dst="::2" if v6 else "127.0.0.2",
                     info=None if ilen is None else bytes((j * 7 + p) & 0xFF for j in range(ilen)),
                     cong=cong, timer=t, expires=1000 * t, cookie=p * 3) for s, p, v6, ilen, cong, t in specs]
    # split into datagrams on message boundaries (layouts persist across datagrams of one dump)
    k = max(1, len(msgs) // ndgrams)
    dgrams = [b"".join(msgs[i:i + k]) for i in range(0, len(msgs), k)]
    assert _fast(dgrams) == _slow_only(dgrams)
    assert len(_fast(dgrams)) == len(msgs)


def test_same_key_but_different_attribute_headers_takes_the_strict_path():
    a = diag_msg(sport=1, info=INFO, cong=b"bbr\0")
    b = bytearray(diag_msg(sport=2, info=INFO, cong=b"bbr\0"))
    # same length/type/seq/family/state (the layout key) but the CONG attribute renamed to type 30
    off = len(b) - 8
    assert struct.unpack_from("=HH", b, off) == (8, diag.INET_DIAG_CONG)
    struct.pack_into("=HH", b, off, 8, 30)
    socks, _ = parse(a + bytes(b) + a)
    assert [s.cong for s in socks] == ["bbr", None, "bbr"]
    # and a corrupted attribute length in a known layout raises instead of mis-decoding
    c = bytearray(diag_msg(sport=3, info=INFO, cong=b"bbr\0"))
    struct.pack_into("=H", c, off, 200)
    with pytest.raises(NetlinkFormatError):
        parse(a + bytes(c))


def test_overlapped_and_plain_dumps_agree():
    out1: list[Socket] = []
    out2: list[Socket] = []
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    try:
        sock = netlink.open_socket()
        try:
            diag.dump_tcp(sock, socket.AF_INET, out=out1, port=port)
            diag.dump_tcp(sock, socket.AF_INET, out=out2, port=port, overlapped=True)
            assert sock.getblocking()
        finally:
            sock.close()
    finally:
        lst.close()
    # The kernel's port filter matches either end: another test's socket whose peer port equals ours may
    # come and go between the two dumps. Our listener must be decoded identically by both paths.
    ours1 = [s for s in out1 if s.sport == port and s.state == LISTEN]
    ours2 = [s for s in out2 if s.sport == port and s.state == LISTEN]
    assert len(ours1) == 1 and ours1 == ours2
