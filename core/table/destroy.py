"""Kill one socket with sock_diag SOCK_DESTROY, as ``ss -K`` does.

The request is an ``inet_diag_req_v2`` naming the socket exactly — family, protocol, the 4-tuple, the
interface and the kernel's cookie — sent with ``nlmsg_type`` SOCK_DESTROY (21) and NLM_F_ACK. The
kernel looks the 4-tuple up and refuses (ESTALE) when the socket it finds has another cookie, so a
record from an older snapshot can never kill a newer socket that reuses the same ends. What the kernel
does then (``tcp_abort``, docs/kernel-facts.md): the owner's next call fails with ECONNABORTED, the
peer of a synchronized connection gets a RST, and the socket is gone from the table (CLOSE); a
listener is closed and the connections waiting in its accept queue are reset; a TIME_WAIT or
SYN_RECV (request) socket is simply removed.

Errors become one line each (`DestroyError`): EOPNOTSUPP (kernel built without
CONFIG_INET_DIAG_DESTROY), EPERM / EACCES (needs CAP_NET_ADMIN in the socket's namespace), ENOENT /
ESTALE (the socket is already gone, or its ends now belong to another socket: the kernel answers ENOENT
when the cookie does not match).
"""

from __future__ import annotations

import errno as _errno
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from sockmon.core.errors import SockmonError
from sockmon.core.netns import run_in_netns
from sockmon.core.records import Socket
from sockmon.core.states import ALL_STATES_MASK, LISTEN
from sockmon.core.table import netlink
from sockmon.core.table.diag import SOCK_DESTROY

# inet_diag_req_v2 with its inet_diag_sockid: family, protocol, ext, pad, states; sport, dport (both
# big-endian), src[16], dst[16], if, cookie[2] (two host-order u32, the low half first).
_REQ_HEAD = struct.Struct("=BBBBI")
_SOCKID = struct.Struct(">HH16s16s")
_TAIL = struct.Struct("=III")

# The kernel finds the socket by a lookup as for an arriving packet. For a listener in a SO_REUSEPORT group
# that lookup picks one member by a hash of the request's peer address and port, and refuses (ENOENT) when
# the member picked has another cookie. So a listener that answers ENOENT is asked again with other peer
# ports until the lookup picks it (the cookie check keeps every other member safe).
LISTEN_TRIES = 512
ACK_TIMEOUT = 5.0  # seconds to wait for the kernel's answer (it answers at once; this only bounds a bug)


class DestroyError(SockmonError):
    """SOCK_DESTROY failed for one socket; ``str()`` is one line with the reason."""


def _addr_bytes(family: int, text: str) -> bytes:
    try:
        raw = socket.inet_pton(family, text)
    except OSError:
        raise DestroyError(f"bad {'IPv4' if family == socket.AF_INET else 'IPv6'} address {text!r}") from None
    return raw.ljust(16, b"\0")


def build_destroy_request(sock: Socket, peer_port: int | None = None) -> bytes:
    """The inet_diag_req_v2 payload naming exactly this socket (family, protocol, 4-tuple, ifindex, cookie).

    ``peer_port`` replaces the record's peer port (0 for a listener) in the lookup: see `LISTEN_TRIES`."""
    family = int(sock.family)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise DestroyError(f"cannot destroy a socket of family {family}: only inet and inet6")
    # a record of another protocol (UDP) may say which; a TCP table's records do not
    protocol = int(getattr(sock, "protocol", socket.IPPROTO_TCP) or socket.IPPROTO_TCP)
    cookie = int(sock.cookie)
    if cookie <= 0:
        # /proc/net/tcp records have no cookie: without it the kernel would take any socket with those ends
        raise DestroyError("this record has no kernel cookie (read from /proc/net/tcp): refusing to destroy "
                           "a socket that cannot be named exactly")
    return (_REQ_HEAD.pack(family, protocol, 0, 0, ALL_STATES_MASK)
            + _SOCKID.pack(sock.sport, sock.dport if peer_port is None else peer_port, _addr_bytes(family, sock.src), _addr_bytes(family, sock.dst))
            + _TAIL.pack(sock.ifindex & 0xFFFFFFFF, cookie & 0xFFFFFFFF, (cookie >> 32) & 0xFFFFFFFF))


def reason(code: int) -> str:
    """One line saying why SOCK_DESTROY failed with this errno."""
    name = _errno.errorcode.get(code, f"E{code}")
    if code == _errno.EOPNOTSUPP:
        return (f"{name}: this kernel cannot destroy sockets (built without CONFIG_INET_DIAG_DESTROY, "
                "or the protocol has no destroy)")
    if code in (_errno.EPERM, _errno.EACCES):
        return f"{name}: killing a socket needs root (CAP_NET_ADMIN in its network namespace)"
    if code in (_errno.ENOENT, _errno.ESTALE):
        # the kernel also answers ENOENT when the socket with these ends has another cookie
        return f"{name}: the socket is already gone (another socket now using its ends is left alone)"
    if code == _errno.EINVAL:
        return f"{name}: the kernel rejected the request (invalid argument)"
    if code in (_errno.EPROTONOSUPPORT, _errno.EAFNOSUPPORT):
        return f"{name}: sock_diag for this family or protocol is not available in this kernel"
    from sockmon.core.errors import errno_info

    return f"{name}: {errno_info(code).meaning}"


@dataclass(frozen=True, slots=True)
class DestroyResult:
    """The outcome for one socket: ``ok`` (destroyed) or the errno and a one-line ``reason``."""

    socket: Socket
    ok: bool
    errno: int | None = None
    reason: str = ""

    @property
    def errno_name(self) -> str | None:
        return None if self.errno is None else _errno.errorcode.get(self.errno, f"E{self.errno}")

    @property
    def gone(self) -> bool:
        """The socket did not exist any more when asked (not a failure to kill it)."""
        return self.errno in (_errno.ENOENT, _errno.ESTALE)


def _ack(nl: socket.socket, seq: int) -> None:
    """Wait for the NLMSG_ERROR answering ``seq``; raise its OSError (none for an ACK)."""
    while True:
        data = nl.recv(netlink.RECV_SIZE)
        if not data:
            raise netlink.NetlinkFormatError("netlink: empty datagram while waiting for an ACK")
        for mtype, _flags, mseq, off, end in netlink.iter_messages(data):
            if mseq != seq:
                continue  # a late answer to something else: not ours
            if mtype == netlink.NLMSG_ERROR:
                err = netlink.error_from(data, off, end)
                if err is not None:
                    raise err
                return
            if mtype == netlink.NLMSG_DONE:
                return


def _destroy_with(nl: socket.socket, sock: Socket) -> DestroyResult:
    result = _destroy_once(nl, sock, None)
    if result.errno == _errno.ENOENT and sock.state == LISTEN:
        for port in range(1, LISTEN_TRIES):
            again = _destroy_once(nl, sock, port)
            if again.errno != _errno.ENOENT:
                return again
    return result


def _destroy_once(nl: socket.socket, sock: Socket, peer_port: int | None) -> DestroyResult:
    try:
        payload = build_destroy_request(sock, peer_port)
    except DestroyError as exc:
        return DestroyResult(sock, False, _errno.EINVAL, str(exc))
    seq = netlink.next_seq()
    try:
        nl.send(netlink.build_message(SOCK_DESTROY, netlink.NLM_F_REQUEST | netlink.NLM_F_ACK, payload, seq))
        _ack(nl, seq)
    except TimeoutError:
        return DestroyResult(sock, False, _errno.ETIMEDOUT, "ETIMEDOUT: the kernel did not answer the request")
    except OSError as exc:
        if isinstance(exc, SockmonError) or exc.errno is None:
            return DestroyResult(sock, False, _errno.EIO, f"netlink: {exc}")
        return DestroyResult(sock, False, exc.errno, reason(exc.errno))
    return DestroyResult(sock, True)


def destroy_many(sockets: Iterable[Socket], netns: str | int | None = None) -> list[DestroyResult]:
    """SOCK_DESTROY each socket (one netlink socket for all), in ``netns`` (None: our own namespace).

    Never raises for a socket that cannot be killed: its result says why. Raises `SockmonError` only
    when the netlink socket itself cannot be opened, or the namespace cannot be entered.
    """
    wanted = list(sockets)

    def work() -> list[DestroyResult]:
        try:
            nl = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
        except OSError as exc:
            raise SockmonError.from_os_error(exc, "open a NETLINK_SOCK_DIAG socket") from None
        try:
            nl.settimeout(ACK_TIMEOUT)
            return [_destroy_with(nl, s) for s in wanted]
        finally:
            nl.close()

    return run_in_netns(netns, work)


def destroy(sock: Socket, netns: str | int | None = None) -> DestroyResult:
    """SOCK_DESTROY one socket; see `destroy_many`."""
    return destroy_many([sock], netns)[0]
