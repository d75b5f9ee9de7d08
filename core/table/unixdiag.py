"""sock_diag for AF_UNIX (``ss -x``): `unix_diag_req` requests and `unix_diag_msg` (+ attributes) →
`UnixSocket`; and the /proc/net/unix fallback.

Layouts from linux/unix_diag.h:

- request ``struct unix_diag_req { u8 sdiag_family, sdiag_protocol; u16 pad; u32 udiag_states,
  udiag_ino, udiag_show; u32 udiag_cookie[2]; }``
- reply ``struct unix_diag_msg { u8 udiag_family, udiag_type, udiag_state, pad; u32 udiag_ino;
  u32 udiag_cookie[2]; }`` then attributes: UNIX_DIAG_NAME (the sun_path bytes; an abstract name
  starts with NUL), UNIX_DIAG_VFS (``{u32 ino, dev}``), UNIX_DIAG_PEER (u32 peer inode),
  UNIX_DIAG_RQLEN (``{u32 rqueue, wqueue}``: for a listener the accept queue and backlog), UNIX_DIAG_UID
  (u32, Linux ≥ 5.3).

Paths are shown as ss shows them: an abstract name's leading NUL (and any NUL inside it) as ``@``;
bytes that are not UTF-8 are kept with surrogateescape (text output makes them inert, JSON writes
them as ``\\xNN``). Strict about lengths like `sockmon.core.table.diag`: a message or attribute that
does not fit raises `NetlinkFormatError`.
"""

from __future__ import annotations

import os
import socket
import struct

from sockmon.core.records import UnixSocket
from sockmon.core.states import ALL_STATES_MASK, CLOSE, ESTABLISHED, LISTEN, SYN_SENT
from sockmon.core.table import netlink
from sockmon.core.table.diag import SOCK_DIAG_BY_FAMILY
from sockmon.core.table.netlink import NetlinkFormatError

UDIAG_SHOW_NAME = 0x01
UDIAG_SHOW_VFS = 0x02
UDIAG_SHOW_PEER = 0x04
UDIAG_SHOW_ICONS = 0x08
UDIAG_SHOW_RQLEN = 0x10
UDIAG_SHOW_MEMINFO = 0x20
UDIAG_SHOW_UID = 0x40

UNIX_DIAG_NAME = 0
UNIX_DIAG_VFS = 1
UNIX_DIAG_PEER = 2
UNIX_DIAG_ICONS = 3
UNIX_DIAG_RQLEN = 4
UNIX_DIAG_MEMINFO = 5
UNIX_DIAG_SHUTDOWN = 6
UNIX_DIAG_UID = 7

SHOW = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID

_REQ = struct.Struct("=BBHIII II")
_MSG = struct.Struct("=BBBxIII")  # family, type, state, pad, ino, cookie[2]
_NO_COOKIE = 0xFFFFFFFF
_U32 = struct.Struct("=I")
_U32X2 = struct.Struct("=II")
_NLA = netlink.NLA_HDR
_HDR = netlink.NLMSG_HDR
_MIN = netlink.NLMSG_HDRLEN + _MSG.size


def build_request(*, states: int = ALL_STATES_MASK, show: int = SHOW) -> bytes:
    return _REQ.pack(socket.AF_UNIX, 0, 0, states, 0, show, _NO_COOKIE, _NO_COOKIE)


def path_text(raw: bytes) -> str:
    """sun_path bytes → text as ss shows them: abstract names (leading NUL) start with ``@``."""
    if not raw:
        return ""
    if raw[:1] == b"\0":
        raw = b"@" + raw[1:].replace(b"\0", b"@")
    else:  # a filesystem path ends at its first NUL (the kernel may report the terminator)
        raw = raw.split(b"\0", 1)[0]
    return raw.decode("utf-8", "surrogateescape")


def parse_datagram(data: bytes, seq: int | None, out: list[UnixSocket]) -> bool:
    """Decode every message of one datagram into ``out``; True when the dump is complete."""
    size = len(data)
    off = 0
    nla = _NLA.unpack_from
    while off < size:
        if size - off < netlink.NLMSG_HDRLEN:
            raise NetlinkFormatError(f"netlink: {size - off} trailing bytes, shorter than a message header")
        length, mtype, _flags, mseq, _pid = _HDR.unpack_from(data, off)
        end = off + length
        if length < netlink.NLMSG_HDRLEN or end > size:
            raise NetlinkFormatError(f"netlink: message length {length} at offset {off} does not fit "
                                     f"the {size}-byte buffer")
        nxt = off + netlink.align4(length)
        if seq is not None and mseq != seq:
            off = nxt
            continue
        if mtype != SOCK_DIAG_BY_FAMILY:
            if netlink.check_control(data, mtype, off, end):
                return True
            off = nxt
            continue
        if length < _MIN:
            raise NetlinkFormatError(f"unix_diag: message length {length} is shorter than a unix_diag_msg")
        _fam, stype, state, ino, c0, c1 = _MSG.unpack_from(data, off + netlink.NLMSG_HDRLEN)
        path = ""
        peer = rq = wq = uid = vdev = vino = 0
        a = off + _MIN
        while a < end:
            if end - a < 4:
                raise NetlinkFormatError("unix_diag: truncated attribute header")
            alen, atype = nla(data, a)
            if alen < 4 or a + alen > end:
                raise NetlinkFormatError(f"unix_diag: attribute length {alen} does not fit its message")
            payload = alen - 4
            p = a + 4
            if atype == UNIX_DIAG_NAME:
                path = path_text(data[p:p + payload])
            elif atype == UNIX_DIAG_PEER and payload >= 4:
                (peer,) = _U32.unpack_from(data, p)
            elif atype == UNIX_DIAG_RQLEN and payload >= 8:
                rq, wq = _U32X2.unpack_from(data, p)
            elif atype == UNIX_DIAG_UID and payload >= 4:
                (uid,) = _U32.unpack_from(data, p)
            elif atype == UNIX_DIAG_VFS and payload >= 8:
                vino, vdev = _U32X2.unpack_from(data, p)
            a += min(netlink.align4(alen), end - a)
        out.append(UnixSocket(stype, state, path, ino, peer, rq, wq, uid, c0 | (c1 << 32), vdev, vino))
        off = nxt
    return False


def dump_unix(sock: socket.socket, *, states: int = ALL_STATES_MASK,
              out: list[UnixSocket] | None = None) -> list[UnixSocket]:
    """Every AF_UNIX socket of the namespace from an open NETLINK_SOCK_DIAG socket (``ss -xa``)."""
    result: list[UnixSocket] = [] if out is None else out
    netlink.dump(sock, SOCK_DIAG_BY_FAMILY, build_request(states=states),
                 lambda data, seq: parse_datagram(data, seq, result))
    return result


# ---------------------------------------------------------------------------------------------------
# /proc/net/unix: "Num RefCount Protocol Flags Type St Inode Path". St is the socket_state (1
# unconnected, 2 connecting, 3 connected, 4 disconnecting); Flags 0x10000 (__SO_ACCEPTCON) marks a
# listener. No queues, peer, uid or cookie there.
_ACCEPTCON = 0x10000
_SS_STATE = {1: CLOSE, 2: SYN_SENT, 3: ESTABLISHED, 4: CLOSE}


def parse_unix_line(line: str) -> UnixSocket | None:
    f = line.rstrip("\n").split(None, 7)
    if len(f) < 7 or not f[0].endswith(":"):
        return None
    try:
        flags = int(f[3], 16)
        stype = int(f[4], 16)
        st = int(f[5], 16)
        ino = int(f[6])
    except ValueError:
        return None
    path = f[7] if len(f) > 7 else ""
    state = LISTEN if flags & _ACCEPTCON else _SS_STATE.get(st, CLOSE)
    return UnixSocket(stype, state, path, ino, 0, 0, 0, 0)


def read_procnet_unix(root: str = "/proc/net") -> list[UnixSocket]:
    """Every row of <root>/unix (abstract names are already shown with a leading ``@`` there)."""
    out: list[UnixSocket] = []
    with open(os.path.join(root, "unix"), encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            s = parse_unix_line(line)
            if s is not None:
                out.append(s)
    return out
