"""Fallback reader of /proc/net/tcp{,6} (and udp{,6}) → `Socket` (when NETLINK_SOCK_DIAG is unavailable).

Less than netlink: no cookie (0), no tcp_info, no congestion algorithm, and for LISTEN sockets the
queues read 0. Addresses are hex of the in-kernel (network order) words printed as host-order u32.
Timer `when` is in clock ticks (USER_HZ = 100 → ×10 ms).
"""

from __future__ import annotations

import os
import socket
import struct

from sockmon.core.records import Socket, Timer

_TICK_MS = 1000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _addr4(hexaddr: str) -> str:
    return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(hexaddr, 16)))


def _addr6(hexaddr: str) -> str:
    words = [int(hexaddr[i:i + 8], 16) for i in range(0, 32, 8)]
    return socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))


def parse_line(line: str, family: int, protocol: int = socket.IPPROTO_TCP) -> Socket | None:
    """One row of /proc/net/tcp{,6} (or udp{,6}: the same columns, ``protocol`` IPPROTO_UDP); None for
    the header or a row that does not parse."""
    f = line.split()
    if len(f) < 10 or not f[0].endswith(":") or not f[0][:-1].isdigit():
        return None
    try:
        local, remote = f[1], f[2]
        lhost, lport = local.rsplit(":", 1)
        rhost, rport = remote.rsplit(":", 1)
        conv = _addr4 if family == socket.AF_INET else _addr6
        state = int(f[3], 16)
        tx, rx = (int(x, 16) for x in f[4].split(":"))
        tr, when = f[5].split(":")
        retrans = int(f[6], 16)
        uid = int(f[7])
        inode = int(f[9])
        kind = int(tr, 16)
        timer = Timer(kind, int(when, 16) * _TICK_MS, retrans) if kind else None
        return Socket(int(family), state, conv(lhost), int(lport, 16), conv(rhost), int(rport, 16), rx, tx,
                      timer, uid, inode, 0, protocol=int(protocol))
    except (ValueError, OSError):
        return None


def read_procnet(root: str = "/proc/net", protocol: str = "tcp") -> list[Socket]:
    """Every row of <root>/tcp and <root>/tcp6 — or udp and udp6 with ``protocol="udp"`` — (a missing
    tcp6 / udp6 — no IPv6 — is skipped)."""
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol must be tcp or udp, got {protocol!r}")
    proto = socket.IPPROTO_TCP if protocol == "tcp" else socket.IPPROTO_UDP
    out: list[Socket] = []
    for name, family in ((protocol, socket.AF_INET), (protocol + "6", socket.AF_INET6)):
        try:
            with open(os.path.join(root, name), encoding="ascii", errors="replace") as fh:
                for line in fh:
                    s = parse_line(line, family, proto)
                    if s is not None:
                        out.append(s)
        except FileNotFoundError:
            if family == socket.AF_INET:
                raise
    return out
