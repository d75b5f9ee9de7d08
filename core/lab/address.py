"""User-typed addresses: ``HOST:PORT`` / ``[v6]:PORT`` parsing and getaddrinfo resolution.

Every bad input raises :class:`BadInput` with one clear line (bad port, empty host, unresolvable name).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from sockmon.core.errors import BadInput

_GAI_NAMES = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}

# The resolver every lookup goes through (`resolve` and so the client and server engines). A module
# attribute so that tests can make a lookup fail, or answer, without sending a DNS query anywhere.
getaddrinfo = socket.getaddrinfo


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return format_endpoint(self.host, self.port)


def format_endpoint(host: str, port: int) -> str:
    """``127.0.0.1:80`` / ``[::1]:80`` (IPv6 literals get brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_port(text: str | int) -> int:
    """A TCP port 0–65535 from text; BadInput otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        if not raw:
            raise BadInput("empty port: give a number 0-65535")
        if not raw.isascii() or not raw.isdigit():
            raise BadInput(f"bad port {raw!r}: not a number (0-65535)")
        value = int(raw)
    if not 0 <= value <= 65535:
        raise BadInput(f"bad port {value}: out of range 0-65535")
    return value


def parse_endpoint(text: str) -> Endpoint:
    """``HOST:PORT`` or ``[IPV6]:PORT`` → Endpoint. The host is not resolved here."""
    raw = (text or "").strip()
    if not raw:
        raise BadInput("empty address: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            raise BadInput(f"bad address {raw!r}: missing ']' after the IPv6 host")
        host = raw[1:close]
        rest = raw[close + 1:]
        if not rest.startswith(":"):
            raise BadInput(f"bad address {raw!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            raise BadInput(f"bad address {raw!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        if ":" in host:
            raise BadInput(f"bad address {raw!r}: put an IPv6 host in brackets, e.g. [::1]:8080")
    if not host.strip():
        raise BadInput(f"bad address {raw!r}: empty host (use e.g. 127.0.0.1)")
    return Endpoint(host.strip(), parse_port(port_text))


def resolve(host: str, port: int | str, *, passive: bool = False, resolver=None,
            numeric: bool = False) -> list[tuple[int, tuple]]:
    """getaddrinfo for TCP: ``[(family, sockaddr), ...]`` in getaddrinfo's order, duplicates dropped.

    ``resolver`` (same signature as `socket.getaddrinfo`) replaces the module's `getaddrinfo` for this call.
    ``numeric`` (like ``nc -n``): AI_NUMERICHOST, so no name is ever looked up; a name is refused (BadInput).
    """
    if not host or not str(host).strip():
        raise BadInput("empty host (use e.g. 127.0.0.1)")
    port = parse_port(port)
    flags = (socket.AI_PASSIVE if passive else 0) | (socket.AI_NUMERICHOST if numeric else 0)
    try:
        infos = (resolver or getaddrinfo)(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP, flags)
    except socket.gaierror as exc:
        if numeric and exc.errno == socket.EAI_NONAME:
            err = BadInput(f"{host!r} is not a numeric address (--numeric never looks names up): "
                           "give an IPv4 or IPv6 address, e.g. 127.0.0.1 or ::1")
            err.gai_name = "EAI_NONAME"
            raise err from None
        err = BadInput(f"cannot resolve {host!r}: {exc.strerror}")
        err.gai_name = _GAI_NAMES.get(exc.errno, "EAI_FAIL")
        raise err from None
    except UnicodeError:
        raise BadInput(f"cannot resolve {host!r}: not a valid host name") from None
    out: list[tuple[int, tuple]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        item = (family, tuple(sockaddr))
        if item not in out:
            out.append(item)
    if not out:
        raise BadInput(f"cannot resolve {host!r}: no IPv4/IPv6 address")
    return out
