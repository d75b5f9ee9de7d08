"""One snapshot of the kernel's TCP socket table (netlink sock_diag, /proc/net fallback)."""

from __future__ import annotations

import errno as _errno
import socket
import time
from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING

import msgspec
from sockmon.core.errors import SockmonError
from sockmon.core.netns import ALL_NETNS, NetnsRef, all_netns, each_netns, run_in_netns
from sockmon.core.records import Snapshot, Socket
from sockmon.core.states import STATE_NAMES, SYN_RECV, parse_state
from sockmon.core.table import diag, netlink
from sockmon.core.table.procnet import read_procnet

if TYPE_CHECKING:
    from sockmon.core.table.owners import OwnerCache

FAMILIES = (socket.AF_INET, socket.AF_INET6)
# errnos meaning "sock_diag is not there" (module missing / protocol unsupported): fall back to /proc
_UNAVAILABLE = {_errno.EPROTONOSUPPORT, _errno.EAFNOSUPPORT, _errno.ENOENT, _errno.EOPNOTSUPP}


def normalize_states(states: Iterable[int | str] | None) -> list[int] | None:
    """State codes from codes or names (names as `parse_state` accepts them); None = all."""
    if states is None:
        return None
    out = []
    for st in states:
        code = parse_state(st) if isinstance(st, str) else int(st)
        if code not in STATE_NAMES:
            from sockmon.core.errors import BadInput

            raise BadInput(f"unknown TCP state code {code}")
        out.append(code)
    return out


OVERLAPPED_RECV = True  # receive in a helper thread while parsing (see netlink.dump_overlapped)


def _netlink_dump(states: list[int] | None, port: int | None, with_info: bool) -> list[Socket]:
    mask = diag.states_mask(states)
    out: list[Socket] = []
    sock = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
    try:
        for family in FAMILIES:
            try:
                diag.dump_tcp(sock, family, states=mask, with_info=with_info, port=port, out=out,
                              overlapped=OVERLAPPED_RECV)
            except OSError as exc:
                # no IPv6 in this kernel / namespace: an empty family, not a failure
                if family == socket.AF_INET6 and exc.errno in _UNAVAILABLE:
                    continue
                raise
    finally:
        sock.close()
    return out


def _procfs_dump(states: list[int] | None, port: int | None, netns_used: bool) -> list[Socket]:
    rows = read_procnet("/proc/thread-self/net" if netns_used else "/proc/net")
    if states is not None:
        wanted = set(states)
        rows = [s for s in rows if s.state in wanted or (s.state == 12 and SYN_RECV in wanted)]
    if port is not None:
        rows = [s for s in rows if s.sport == port or s.dport == port]
    return rows


def _dump(st: list[int] | None, port: int | None, with_info: bool, in_netns: bool) -> tuple[list[Socket], str]:
    """The sockets of the calling thread's namespace and a note ("" or why /proc/net was read)."""
    try:
        return _netlink_dump(st, port, with_info), ""
    except OSError as exc:
        if isinstance(exc, SockmonError) or exc.errno not in _UNAVAILABLE:
            raise
        note = (f"netlink sock_diag unavailable ({_errno.errorcode.get(exc.errno, exc.errno)}: "
                f"{exc.strerror}); read /proc/net/tcp{{,6}}: no tcp_info, cookies or LISTEN queues")
        return _procfs_dump(st, port, in_netns), note


def take_snapshot_all(*, refs: list[NetnsRef] | None = None, states: Iterable[int] | None = None,
                      port: int | None = None, with_info: bool = True,
                      owners: OwnerCache | None = None) -> Snapshot:
    """Every TCP socket of every network namespace (``refs``, default `all_netns()`), each with its
    ``netns`` set to the namespace's ident; ``Snapshot.netns`` is ALL_NETNS and ``namespaces`` the
    namespaces dumped. One helper thread enters each namespace in turn (`each_netns`); one that vanished
    meanwhile is left out (named in ``note``), never an error. Cookies are unique host-wide, so sockets
    of different namespaces never share a `Socket.key`; socket inodes are host-wide too, so one
    `OwnerCache` finds the owners in every namespace.
    """
    st = normalize_states(states)
    refs = all_netns() if refs is None else refs
    taken_at = time.monotonic()
    wall = time.time()
    results, skipped = each_netns(refs, lambda ref: _dump(st, port, with_info, True))
    replace = msgspec.structs.replace
    sockets: list[Socket] = []
    notes: list[str] = []
    source = "netlink"
    for ref, (socks, note) in results:
        ident = ref.ident
        sockets += [replace(s, netns=ident) for s in socks]
        if note:
            source = "procfs"
            notes.append(f"{ref.ident}: {note}")
    if skipped:
        notes.append("namespaces left out: " + "; ".join(skipped))
    owner_map = MappingProxyType(owners.resolve_sockets(sockets)) if owners else None
    return Snapshot(
        sockets=tuple(sockets), taken_at=taken_at, wall_time=wall, source=source, netns=ALL_NETNS,
        **({"owners": owner_map} if owner_map is not None else {}), note="; ".join(notes),
        namespaces=tuple(ref for ref, _ in results),
    )


def take_snapshot(*, netns: str | int | None = None, states: Iterable[int] | None = None,
                  port: int | None = None, with_info: bool = True,
                  owners: OwnerCache | None = None) -> Snapshot:
    """Every TCP socket (IPv4 + IPv6) of the caller's namespace, or of ``netns`` (a /run/netns name,
    a pid, "pid:N" or a path), or of every namespace (``netns=ALL_NETNS``: `take_snapshot_all`).

    ``states`` (codes or names) and ``port`` (either side) are filtered in the kernel. Netlink
    errors raise OSError with the kernel's errno; when sock_diag itself is unavailable the snapshot
    comes from /proc/net/tcp{,6} with ``source="procfs"`` and a ``note`` saying why.
    """
    st = normalize_states(states)
    if port is not None and not 0 <= int(port) <= 65535:
        from sockmon.core.errors import BadInput

        raise BadInput(f"port must be 0-65535, got {port}")
    if netns == ALL_NETNS:
        return take_snapshot_all(states=st, port=port, with_info=with_info, owners=owners)
    taken_at = time.monotonic()
    wall = time.time()
    source, note = "netlink", ""

    sockets, note = run_in_netns(netns, lambda: _dump(st, port, with_info, netns is not None))
    if note:
        source = "procfs"
    owner_map = MappingProxyType(owners.resolve_sockets(sockets)) if owners else None
    return Snapshot(
        sockets=tuple(sockets), taken_at=taken_at, wall_time=wall, source=source,
        netns=None if netns is None else str(netns),
        **({"owners": owner_map} if owner_map is not None else {}), note=note,
    )
