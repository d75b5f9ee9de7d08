"""The bytes of a ``struct sockaddr_in`` / ``sockaddr_in6`` laid out field by field.

sockaddr_in (16 bytes): sin_family in host byte order (``02 00`` on little-endian), sin_port big-endian
(8080 → ``1f 90``), sin_addr big-endian (127.0.0.1 → ``7f 00 00 01``), then 8 zero bytes of padding.
sockaddr_in6 (28 bytes): family, port, flowinfo (big-endian), 16 address bytes, scope_id (host order).
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

from sockmon.core.errors import BadInput
from sockmon.core.lab.address import parse_port

_HOST_ORDER = "<" if sys.byteorder == "little" else ">"


@dataclass(frozen=True, slots=True)
class SockaddrField:
    name: str
    offset: int
    raw: bytes
    meaning: str

    @property
    def hex(self) -> str:
        return self.raw.hex(" ")


def _family_name(family: int) -> str:
    return {socket.AF_INET: "AF_INET", socket.AF_INET6: "AF_INET6"}.get(family, str(family))


def sockaddr_fields(family: int, host: str, port: int, *, flowinfo: int = 0,
                    scope_id: int = 0) -> list[SockaddrField]:
    """Field-by-field layout; ``host`` must be a numeric address of ``family``."""
    port = parse_port(port)
    fam = struct.pack(_HOST_ORDER + "H", int(family))
    order = "little-endian" if _HOST_ORDER == "<" else "big-endian"
    port_raw = struct.pack(">H", port)
    if family == socket.AF_INET:
        try:
            addr = socket.inet_pton(socket.AF_INET, host)
        except OSError:
            raise BadInput(f"not an IPv4 address: {host!r}") from None
        return [
            SockaddrField("sin_family", 0, fam, f"{_family_name(family)} = {int(family)}, host byte order ({order})"),
            SockaddrField("sin_port", 2, port_raw, f"port {port}, network byte order (big-endian)"),
            SockaddrField("sin_addr", 4, addr, f"{host}, network byte order"),
            SockaddrField("sin_zero", 8, bytes(8), "padding to 16 bytes, always zero"),
        ]
    if family == socket.AF_INET6:
        try:
            addr = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        except OSError:
            raise BadInput(f"not an IPv6 address: {host!r}") from None
        if not 0 <= flowinfo <= 0xFFFFFFFF or not 0 <= scope_id <= 0xFFFFFFFF:
            raise BadInput("flowinfo and scope_id must fit in 32 bits")
        return [
            SockaddrField("sin6_family", 0, fam, f"{_family_name(family)} = {int(family)}, host byte order ({order})"),
            SockaddrField("sin6_port", 2, port_raw, f"port {port}, network byte order (big-endian)"),
            SockaddrField("sin6_flowinfo", 4, struct.pack(">I", flowinfo), f"flow label {flowinfo}, network byte order"),
            SockaddrField("sin6_addr", 8, addr, f"{socket.inet_ntop(socket.AF_INET6, addr)}, network byte order"),
            SockaddrField("sin6_scope_id", 24, struct.pack(_HOST_ORDER + "I", scope_id),
                          f"interface index {scope_id} (link-local scope), host byte order"),
        ]
    raise BadInput(f"unsupported address family {family!r}: AF_INET or AF_INET6")


def sockaddr_bytes(family: int, host: str, port: int, *, flowinfo: int = 0, scope_id: int = 0) -> bytes:
    return b"".join(f.raw for f in sockaddr_fields(family, host, port, flowinfo=flowinfo, scope_id=scope_id))


def sockaddr_of(sock: socket.socket, *, peer: bool = False) -> list[SockaddrField]:
    """The layout of a socket's local (or peer) address."""
    addr = sock.getpeername() if peer else sock.getsockname()
    if sock.family == socket.AF_INET6:
        host, port, flowinfo, scope_id = addr
        return sockaddr_fields(sock.family, host, port, flowinfo=flowinfo, scope_id=scope_id)
    return sockaddr_fields(sock.family, addr[0], addr[1])
