"""One snapshot of the kernel's TCP socket table (netlink sock_diag, /proc/net fallback), and of its UDP
and UNIX sockets when asked."""

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
from sockmon.core.records import Snapshot, Socket, UnixSocket
from sockmon.core.states import ALL_STATES_MASK, CLOSE, LISTEN, STATE_NAMES, SYN_RECV, parse_state
from sockmon.core.table import diag, netlink, unixdiag
from sockmon.core.table.procnet import read_procnet
from sockmon.core.table.unixdiag import read_procnet_unix

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
    _each_family(lambda sock, family: diag.dump_tcp(sock, family, states=mask, with_info=with_info, port=port,
                                                    out=out, overlapped=OVERLAPPED_RECV))
    return out


def _each_family(dump) -> None:
    """``dump(sock, family)`` for IPv4 and IPv6 over one sock_diag socket; a kernel / namespace without
    IPv6 gives an empty family, not a failure."""
    sock = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
    try:
        for family in FAMILIES:
            try:
                dump(sock, family)
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno in _UNAVAILABLE:
                    continue
                raise
    finally:
        sock.close()


def _procfs_dump(states: list[int] | None, port: int | None, netns_used: bool) -> list[Socket]:
    rows = read_procnet("/proc/thread-self/net" if netns_used else "/proc/net")
    if states is not None:
        wanted = set(states)
        rows = [s for s in rows if s.state in wanted or (s.state == 12 and SYN_RECV in wanted)]
    if port is not None:
        rows = [s for s in rows if s.sport == port or s.dport == port]
    return rows


PROTOCOLS = ("tcp", "udp", "unix")
TCP_ONLY = frozenset({"tcp"})


def normalize_protocols(protocols: Iterable[str] | None) -> frozenset[str]:
    """A set of "tcp" / "udp" / "unix" (None = TCP only); BadInput for anything else or an empty set."""
    if protocols is None:
        return TCP_ONLY
    out = frozenset(str(p).lower() for p in protocols)
    bad = sorted(out - set(PROTOCOLS))
    if bad or not out:
        from sockmon.core.errors import BadInput

        raise BadInput(f"socket types must be some of tcp, udp, unix; got {', '.join(bad) or 'none'}")
    return out


def _udp_states(states: list[int] | None) -> list[int] | None:
    """TCP state codes asked for → UDP ones: LISTEN (``--listening``) means a bound, unconnected
    socket (CLOSE, shown UNCONN), as ``ss -ul`` has it."""
    if states is None:
        return None
    return sorted({CLOSE if s == LISTEN else s for s in states})


def _extra_dump(protocols: frozenset[str], states: list[int] | None, port: int | None,
                netns_used: bool) -> tuple[list[Socket], list[UnixSocket], str]:
    """UDP and UNIX sockets when asked, by netlink, else from /proc/net/udp{,6} and /proc/net/unix
    (the note then says so)."""
    udp: list[Socket] = []
    unix: list[UnixSocket] = []
    notes = []
    if "udp" in protocols:
        ust = _udp_states(states)
        try:
            _each_family(lambda sock, family: diag.dump_udp(sock, family, states=diag.states_mask(ust), port=port,
                                                            out=udp))
        except OSError as exc:
            if isinstance(exc, SockmonError) or exc.errno not in _UNAVAILABLE:
                raise
            notes.append("UDP from /proc/net/udp{,6} (no udp_diag)")
            udp = read_procnet("/proc/thread-self/net" if netns_used else "/proc/net", "udp")
            if ust is not None:
                udp = [s for s in udp if s.state in ust]
            if port is not None:
                udp = [s for s in udp if s.sport == port or s.dport == port]
    if "unix" in protocols:
        ux_states = None if states is None else sorted(set(states))
        mask = ALL_STATES_MASK if ux_states is None else sum(1 << s for s in ux_states)
        try:
            sock = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
            try:
                unixdiag.dump_unix(sock, states=mask, out=unix)
            finally:
                sock.close()
        except OSError as exc:
            if isinstance(exc, SockmonError) or exc.errno not in _UNAVAILABLE:
                raise
            notes.append("UNIX sockets from /proc/net/unix (no unix_diag: no queues, peers or uids)")
            unix = read_procnet_unix("/proc/thread-self/net" if netns_used else "/proc/net")
            if ux_states is not None:
                unix = [s for s in unix if s.state in ux_states]
    return udp, unix, "; ".join(notes)


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
                      owners: OwnerCache | None = None, protocols: Iterable[str] | None = None) -> Snapshot:
    """Every socket of every network namespace (``refs``, default `all_netns()`), each with its
    ``netns`` set to the namespace's ident; ``Snapshot.netns`` is ALL_NETNS and ``namespaces`` the
    namespaces dumped. One helper thread enters each namespace in turn (`each_netns`); one that vanished
    meanwhile is left out (named in ``note``), never an error. Cookies are unique host-wide, so sockets
    of different namespaces never share a `Socket.key`; socket inodes are host-wide too, so one
    `OwnerCache` finds the owners in every namespace. ``protocols`` as in `take_snapshot`.
    """
    protos = normalize_protocols(protocols)
    st = normalize_states(states)
    refs = all_netns() if refs is None else refs
    taken_at = time.monotonic()
    wall = time.time()

    def dump_one(ref):
        extra = _extra_dump(protos, st, port, True) if protos != TCP_ONLY else ([], [], "")
        tcp = _dump(st, port, with_info, True) if "tcp" in protos else ([], "")
        return tcp, extra

    results, skipped = each_netns(refs, dump_one)
    replace = msgspec.structs.replace
    sockets: list[Socket] = []
    udp: list[Socket] = []
    unix: list[UnixSocket] = []
    notes: list[str] = []
    source = "netlink"
    for ref, ((socks, note), (u, x, extra_note)) in results:
        ident = ref.ident
        sockets += [replace(s, netns=ident) for s in socks]
        udp += [replace(s, netns=ident) for s in u]
        unix += [replace(s, netns=ident) for s in x]
        if note:
            source = "procfs"
            notes.append(f"{ref.ident}: {note}")
        if extra_note:
            notes.append(f"{ref.ident}: {extra_note}")
    if skipped:
        notes.append("namespaces left out: " + "; ".join(skipped))
    owned = [*sockets, *udp, *unix] if (udp or unix) else sockets
    owner_map = MappingProxyType(owners.resolve_sockets(owned)) if owners else None
    return Snapshot(
        sockets=tuple(sockets), taken_at=taken_at, wall_time=wall, source=source, netns=ALL_NETNS,
        **({"owners": owner_map} if owner_map is not None else {}), note="; ".join(notes),
        namespaces=tuple(ref for ref, _ in results), udp=tuple(udp), unix=tuple(unix), protocols=protos,
    )


def take_snapshot(*, netns: str | int | None = None, states: Iterable[int] | None = None,
                  port: int | None = None, with_info: bool = True,
                  owners: OwnerCache | None = None, protocols: Iterable[str] | None = None) -> Snapshot:
    """Every TCP socket (IPv4 + IPv6) of the caller's namespace, or of ``netns`` (a /run/netns name,
    a pid, "pid:N" or a path), or of every namespace (``netns=ALL_NETNS``: `take_snapshot_all`).

    ``states`` (codes or names) and ``port`` (either side) are filtered in the kernel. Netlink
    errors raise OSError with the kernel's errno; when sock_diag itself is unavailable the snapshot
    comes from /proc/net/tcp{,6} with ``source="procfs"`` and a ``note`` saying why.

    ``protocols`` (some of "tcp", "udp", "unix"; default TCP only): UDP sockets go to
    ``Snapshot.udp``, UNIX sockets to ``Snapshot.unix`` (``sockets`` stays TCP, empty without "tcp").
    ``states`` apply to UDP too (LISTEN meaning unconnected, like ``ss -ul``) and to UNIX sockets;
    ``port`` to UDP; owners are resolved for all of them in one pass.
    """
    protos = normalize_protocols(protocols)
    st = normalize_states(states)
    if port is not None and not 0 <= int(port) <= 65535:
        from sockmon.core.errors import BadInput

        raise BadInput(f"port must be 0-65535, got {port}")
    if netns == ALL_NETNS:
        return take_snapshot_all(states=st, port=port, with_info=with_info, owners=owners, protocols=protos)
    taken_at = time.monotonic()
    wall = time.time()
    source, note = "netlink", ""

    extra: tuple[list[Socket], list[UnixSocket], str] = ([], [], "")

    def collect() -> tuple[list[Socket], str]:
        nonlocal extra
        if protos != TCP_ONLY:
            extra = _extra_dump(protos, st, port, netns is not None)
        if "tcp" not in protos:
            return [], ""
        return _dump(st, port, with_info, netns is not None)

    sockets, note = run_in_netns(netns, collect)
    if note:
        source = "procfs"
    udp, unix, extra_note = extra
    if extra_note:
        note = f"{note}; {extra_note}" if note else extra_note
    owned = [*sockets, *udp, *unix] if (udp or unix) else sockets  # one pass: the cache keeps only these
    owner_map = MappingProxyType(owners.resolve_sockets(owned)) if owners else None
    return Snapshot(
        sockets=tuple(sockets), taken_at=taken_at, wall_time=wall, source=source,
        netns=None if netns is None else str(netns),
        **({"owners": owner_map} if owner_map is not None else {}), note=note,
        udp=tuple(udp), unix=tuple(unix), protocols=protos,
    )
