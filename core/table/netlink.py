"""Raw NETLINK sockets with the standard library: send a request, receive a dump, raise NLMSG_ERROR.

Only what sock_diag needs. Message walking is strict: a length field that is too small, runs past
the buffer or leaves a partial header raises `NetlinkFormatError`; the walk always advances, so
garbage can never make it loop.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os
import queue
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from sockmon.core.errors import SockmonError

NETLINK_SOCK_DIAG = 4

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH

NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLMSG_HDRLEN = NLMSG_HDR.size  # 16
NLA_HDR = struct.Struct("=HH")  # len, type
_ERR = struct.Struct("=i")

RECV_SIZE = 65536  # the kernel fills at most ~32 KiB per dump recv

_seq = itertools.count(int.from_bytes(os.urandom(2), "little") + 1)


class NetlinkFormatError(SockmonError):
    """A netlink message whose lengths do not add up (truncated, oversized, garbage)."""


def align4(n: int) -> int:
    return (n + 3) & ~3


def open_socket(protocol: int = NETLINK_SOCK_DIAG) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, protocol)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


def build_message(msg_type: int, flags: int, payload: bytes, seq: int) -> bytes:
    return NLMSG_HDR.pack(NLMSG_HDRLEN + len(payload), msg_type, flags, seq, 0) + payload


def next_seq() -> int:
    return next(_seq) & 0xFFFFFFFF


def error_from(data: bytes | memoryview, off: int, end: int) -> OSError | None:
    """The OSError carried by an NLMSG_ERROR message at ``off`` (None for an ACK, errno 0)."""
    if end - off < NLMSG_HDRLEN + 4:
        raise NetlinkFormatError("truncated NLMSG_ERROR message")
    (code,) = _ERR.unpack_from(data, off + NLMSG_HDRLEN)
    if code == 0:
        return None
    num = -code if code < 0 else code
    return OSError(num, f"netlink: {_errno.errorcode.get(num, num)}: {os.strerror(num)}")


def iter_messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, offset, end) of each message in ``data``; strict about lengths."""
    off = 0
    size = len(data)
    unpack = NLMSG_HDR.unpack_from
    while off < size:
        if size - off < NLMSG_HDRLEN:
            raise NetlinkFormatError(f"netlink: {size - off} trailing bytes, shorter than a message header")
        length, mtype, flags, seq, _pid = unpack(data, off)
        if length < NLMSG_HDRLEN or off + length > size:
            raise NetlinkFormatError(f"netlink: message length {length} at offset {off} does not fit "
                                     f"the {size}-byte buffer")
        yield mtype, flags, seq, off, off + length
        off += align4(length)


def dump(sock: socket.socket, msg_type: int, payload: bytes, handle: Callable[[bytes, int], bool]) -> None:
    """Send a dump request; feed each received datagram to ``handle(data, seq)`` until it returns True.

    ``handle`` parses the messages (the fast path wants the whole buffer) and returns True when it
    met NLMSG_DONE; it raises `error_from(...)` for NLMSG_ERROR (see `check_control`).
    """
    seq = next_seq()
    sock.send(build_message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, payload, seq))
    _receive_until_done(sock, seq, handle)


def _receive_until_done(sock: socket.socket, seq: int, handle: Callable[[bytes, int], bool]) -> None:
    """recv() datagrams of the dump ``seq`` (blocking) and hand each to ``handle`` until it says done."""
    while True:
        data = sock.recv(RECV_SIZE)
        if not data:
            raise NetlinkFormatError("netlink: empty datagram in the middle of a dump")
        if handle(data, seq):
            return


_STOPPED = object()
_DONE_TAIL = struct.pack("=IH", NLMSG_HDRLEN + 4, NLMSG_DONE)  # a datagram ending in NLMSG_DONE


def dump_overlapped(sock: socket.socket, msg_type: int, payload: bytes,
                    handle: Callable[[bytes, int], bool]) -> None:
    """Like `dump`, but a helper thread receives while the caller parses.

    The kernel builds the next part of a dump inside recvmsg() with the GIL released, so a reader
    thread lets that kernel work overlap the caller's parsing on another CPU. The reader stops when
    a datagram looks like the last one (ends in NLMSG_DONE) — only a hint: ``handle`` decides, and
    if the reader stopped early the caller simply goes on receiving itself. On any exit the reader
    is woken through a pipe and joined; the socket is left blocking.
    """
    seq = next_seq()
    sock.send(build_message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, payload, seq))
    items: queue.SimpleQueue = queue.SimpleQueue()
    wake_r, wake_w = os.pipe()
    sock.setblocking(False)

    def reader() -> None:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        try:
            while True:
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:
                    if any(fd == wake_r for fd, _ev in poller.poll()):
                        return
                    continue
                items.put(data)
                if not data or data[-20:-14] == _DONE_TAIL:
                    return
        except BaseException as exc:  # handed to the caller's thread
            items.put(exc)
        finally:
            items.put(_STOPPED)

    th = threading.Thread(target=reader, name="sockmon-netlink-recv", daemon=True)
    th.start()
    try:
        while True:
            data = items.get()
            if data is _STOPPED:  # the reader guessed the end too early: go on ourselves
                sock.setblocking(True)
                _receive_until_done(sock, seq, handle)
                return
            if isinstance(data, BaseException):
                raise data
            if not data:
                raise NetlinkFormatError("netlink: empty datagram in the middle of a dump")
            if handle(data, seq):
                return
    finally:
        os.write(wake_w, b"x")
        th.join()
        os.close(wake_r)
        os.close(wake_w)
        sock.setblocking(True)


def check_control(data: bytes | memoryview, mtype: int, off: int, end: int) -> bool:
    """For a non-data message: True at NLMSG_DONE, raise OSError at NLMSG_ERROR, False otherwise."""
    if mtype == NLMSG_DONE:
        return True
    if mtype == NLMSG_ERROR:
        err = error_from(data, off, end)
        if err is not None:
            raise err
        return True
    return False
