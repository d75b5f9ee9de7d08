"""Loopback connections that end in known ways, with known bytes and lifetimes (closed-connection tests)."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

CLIENT_SENDS = 1234
SERVER_SENDS = 567
LIFETIME = 1.0


@dataclass
class Ended:
    how: str  # "FIN" or "RST"
    client: tuple[str, int]  # the client's local end
    server: tuple[str, int]  # the server's (accepted) local end
    opened: float  # monotonic, before connect
    closed: float  # monotonic, after close


def recv_exactly(s: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        assert chunk, "peer closed early"
        got += chunk
    return got


def one_connection(listener: socket.socket, how: str, lifetime: float = LIFETIME) -> Ended:
    """Connect, exchange CLIENT_SENDS / SERVER_SENDS bytes, stay open ``lifetime`` s, then close: FIN (both
    ends close() normally, the client first) or RST (the client closes with SO_LINGER 0)."""
    opened = time.monotonic()
    cli = socket.create_connection(listener.getsockname()[:2])
    srv, _ = listener.accept()
    cli.sendall(b"c" * CLIENT_SENDS)
    recv_exactly(srv, CLIENT_SENDS)
    srv.sendall(b"s" * SERVER_SENDS)
    recv_exactly(cli, SERVER_SENDS)
    time.sleep(lifetime)
    ends = Ended(how, cli.getsockname()[:2], srv.getsockname()[:2], opened, 0.0)
    if how == "RST":
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()
        srv.close()
    else:
        cli.close()
        srv.recv(1)  # the client's FIN arrived
        srv.close()
    ends.closed = time.monotonic()
    return ends
