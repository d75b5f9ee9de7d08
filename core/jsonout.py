"""The one JSON encoder of sockmon's headless output: `ls`, `watch`, `connect` and `serve` (JSON lines).

Every record becomes one JSON object on its own line, written by one ``msgspec.json.Encoder`` (C:
escaping, numbers, nesting). The shapes:

- socket (`ls --json`): protocol ("tcp" / "udp", last), family and state by name (an unconnected UDP
  socket is "UNCONN"), the 4-tuple, queues, ``timer`` (name, expires_ms,
  retrans) or null, uid, inode, cookie, the owner (pid, process, user; null when unknown), the
  congestion algorithm and ``tcp_info``: every `TcpInfo` field by name, or null; with rates (`ls --rates S`) also
  ``rx_bps`` / ``tx_bps``: bytes per second received / acknowledged by the peer between two dumps (null: no
  rate — not in the first dump, or no tcp_info); from an
  every-namespace snapshot (`ls --all-netns`) also ``netns``: the namespace's name, or ``pid:N``.
- UNIX socket (`ls --unix --json`): protocol and family "unix", type (u_str / u_dgr / u_seq), state,
  path (abstract names start with "@"), inode, peer_inode, queues, uid, cookie, owner (`UnixOut`).
- transition (`watch --json`): ts, family, src, sport, dst, dport, old and new state by name, source,
  dwell_ms (null when unknown).
- kill result (`kill --json`): a socket's shape plus ``result`` (killed / gone / failed), ``errno`` and
  ``reason``; socket options (`opts --json`): the process, fd, socket and every option read back.
- closed connection (`ls --closed --json`): the 4-tuple, ended (FIN, RST, "RST or timeout",
  "connect failed", unknown), final_state, opened / closed (ISO 8601 UTC; opened null when the birth
  was not seen), lifetime_s, birth_seen, bytes each way, the owner as last seen, states with seconds.
- engine event (`connect --json`, `serve --json`): ts (monotonic, for ordering), time (wall clock,
  ISO 8601 UTC with microseconds), kind, then every other field of the `Event` that is set (not None,
  not ""), payload bytes as ``data`` (text, undecodable bytes as ``\\xNN``) and ``hex`` (exact).

- packet ladder (`connect --ladder --json`, interleaved with the events): ``{"ladder": {"n", "t_ms",
  "dir" ("c>s" / "s>c"), "flags" (["SYN", "ACK"]), "seq", "ack" (null without ACK), "win", "wscale"
  (null: unscaled), "len", "opts"}}`` per packet (`sockmon.core.lab.ladder.LadderPacket`); once at the end
  ``{"ladder_end": {"packets", "evicted", "kernel_drops"}}``; instead of packets, when no capture can run,
  ``{"ladder_unavailable": "one line saying why"}``.

Strings are written as they are, escaped as JSON requires (control characters as ``\\u001b``...):
JSON output stays lossless and safe to print; making text safe for a terminal is the text output's
job (`sockmon.core.text`). A string holding bytes that were not UTF-8 (lone surrogates, e.g. a
process name) is written with those bytes as ``\\xNN``, like event payloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import msgspec
from msgspec import Struct
from msgspec.structs import astuple
from sockmon.core.netns import ALL_NETNS
from sockmon.core.records import (
    FAMILY_NAMES,
    PROTOCOL_NAMES,
    Process,
    Snapshot,
    Socket,
    Transition,
    UnixSocket,
)
from sockmon.core.series import Rates
from sockmon.core.states import TIMER_NAMES, state_name
from sockmon.core.tcpinfo import TcpInfo, decode_tcp_info_from

_encoder = msgspec.json.Encoder()


def iso_time(wall: float) -> str:
    """Seconds since the epoch → ISO 8601 UTC with microseconds (``2026-11-26T14:05:01.123456Z``)."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
encode_lines = _encoder.encode_lines  # an iterable of objects → newline-delimited JSON bytes


class TimerOut(Struct, frozen=True, gc=False):
    name: str
    expires_ms: int
    retrans: int


class SocketOut(Struct, frozen=True, gc=False):
    family: str
    state: str
    src: str
    sport: int
    dst: str
    dport: int
    recv_q: int
    send_q: int
    timer: TimerOut | None
    uid: int
    inode: int
    cookie: int
    pid: int | None
    process: str | None
    user: str | None
    cong: str | None
    tcp_info: TcpInfo | None
    protocol: str = "tcp"  # "tcp" or "udp" (UDP rows: no timer, cong or tcp_info; state "UNCONN" unconnected)


class UnixOut(Struct, frozen=True, gc=False):
    """A UNIX socket (`ls --unix --json`): the same names as a TCP / UDP row where they apply."""

    protocol: str  # "unix"
    family: str  # "unix"
    type: str  # "u_str", "u_dgr", "u_seq" (ss's Netid)
    state: str  # LISTEN, ESTABLISHED, UNCONN, SYN_SENT
    path: str  # "" unnamed; abstract names start with "@"
    inode: int
    peer_inode: int  # 0: no peer
    recv_q: int
    send_q: int
    uid: int
    cookie: int
    pid: int | None
    process: str | None
    user: str | None


class UnixNetnsOut(UnixOut, frozen=True, gc=False):
    """A UNIX socket of an every-namespace snapshot: its namespace's ident last."""

    netns: str | None = None


class SocketNetnsOut(SocketOut, frozen=True, gc=False):
    """A socket of an every-namespace snapshot (`ls --all-netns`): its namespace's ident last."""

    netns: str | None = None


class SocketRatesOut(SocketOut, frozen=True, gc=False):
    rx_bps: float | None = None
    tx_bps: float | None = None


class TransitionOut(Struct, frozen=True, gc=False):
    ts: float
    family: str
    src: str
    sport: int
    dst: str
    dport: int
    old: str
    new: str
    source: str
    dwell_ms: float | None


class TransitionNetnsOut(TransitionOut, frozen=True, gc=False):
    """A transition of an every-namespace view (`watch --all-netns`): its namespace, null when unknown."""

    netns: str | None


def _clean(value):
    """``value`` with every string that cannot be UTF-8 (lone surrogates: bytes that were not UTF-8,
    e.g. a process name decoded with surrogateescape) shown as its bytes, undecodable ones ``\\xNN``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, Struct):
        return msgspec.structs.replace(value, **{name: _clean(getattr(value, name))
                                                  for name in value.__struct_fields__})
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    return value


def _encode_lines(items: list) -> bytes:
    try:
        return encode_lines(items)
    except UnicodeEncodeError:  # rare: only then is every string checked
        return encode_lines([_clean(x) for x in items])


class _Names(dict):
    """code → name, built once per code seen (unknown codes named as `sockmon.core.states` names them)."""

    def __init__(self, name_of) -> None:
        super().__init__()
        self.name_of = name_of

    def __missing__(self, code: int) -> str:
        name = self[code] = self.name_of(code)
        return name


_family = _Names(lambda code: FAMILY_NAMES.get(code, str(code)))
_state = _Names(state_name)
_timer = _Names(lambda kind: TIMER_NAMES.get(kind, f"timer{kind}"))
_protocol = _Names(lambda code: PROTOCOL_NAMES.get(code, str(code)))


CHUNK = 4096  # sockets encoded per piece of `snapshot_lines`: bounded memory, output starts early


def snapshot_lines(snapshot: Snapshot, chunk: int = CHUNK, rates: Rates | None = None) -> Iterator[bytes]:
    """Every socket of a snapshot, one JSON object per line (`sockmon ls --json`), in pieces of
    ``chunk`` sockets (each piece ends with a newline). this loop is most of
    what `ls --json` costs beyond the dump. With ``rates`` (of this snapshot) each row also carries
    ``rx_bps`` / ``tx_bps`` (rounded to 0.1 B/s; null where there is no rate)."""
    get_rate = rates.get if rates is not None else None
    owner_of = snapshot.owners.get
    socks = snapshot.sockets
    family, state, timer_name = _family, _state, _timer
    out, timer_out, decode = SocketOut, TimerOut, decode_tcp_info_from
    with_ns = snapshot.netns == ALL_NETNS  # every row says its namespace ("netns": NAME or pid:N)
    ns_out = SocketNetnsOut
    for i in range(0, len(socks), chunk):
        rows = []
        append = rows.append
        for s in socks[i:i + chunk]:
            t = s.timer
            b = s.tcp_info_bytes
            p = owner_of(s.inode) if s.inode else None
            if p is None:
                pid = name = user = None
            else:
                pid, name, user = p.pid, p.name, p.user
            if with_ns:
                row = ns_out(family[s.family], state[s.state], s.src, s.sport, s.dst, s.dport, s.recv_q,
                             s.send_q, None if t is None else timer_out(timer_name[t.kind], t.expires_ms, t.retrans),
                             s.uid, s.inode, s.cookie, pid, name, user, s.cong, None if b is None else decode(b),
                             "tcp", s.netns)
            else:
                row = out(family[s.family], state[s.state], s.src, s.sport, s.dst, s.dport, s.recv_q, s.send_q,
                          None if t is None else timer_out(timer_name[t.kind], t.expires_ms, t.retrans),
                          s.uid, s.inode, s.cookie, pid, name, user, s.cong, None if b is None else decode(b))
            if get_rate is not None:  # `ls --rates` (never with --all-netns: ls refuses the pair)
                r = get_rate(s)
                row = SocketRatesOut(*astuple(row), *((None, None) if r is None else (round(r[0], 1), round(r[1], 1))))
            append(row)
        yield _encode_lines(rows)
    udp = snapshot.udp
    for i in range(0, len(udp), chunk):
        yield _encode_lines([udp_out(s, owner_of(s.inode) if s.inode else None, with_ns) for s in udp[i:i + chunk]])
    unix = snapshot.unix
    for i in range(0, len(unix), chunk):
        yield _encode_lines([unix_out(u, owner_of(u.inode) if u.inode else None, with_ns)
                             for u in unix[i:i + chunk]])


def udp_out(s, owner: Process | None, with_ns: bool = False) -> SocketOut:
    """A UDP socket in the TCP row's shape (state "UNCONN" or "ESTABLISHED"; no timer, cong, tcp_info);
    with ``with_ns`` (`ls --all-netns`) also its namespace."""
    fields = (_family[s.family], s.state_name, s.src, s.sport, s.dst, s.dport, s.recv_q, s.send_q, None,
              s.uid, s.inode, s.cookie, None if owner is None else owner.pid,
              None if owner is None else owner.name, None if owner is None else owner.user, None, None,
              _protocol[s.protocol])
    return SocketNetnsOut(*fields, s.netns) if with_ns else SocketOut(*fields)


def socket_out(s: Socket, owner: Process | None) -> SocketOut:
    """One socket in the shape of `snapshot_lines` (for commands that report on a few sockets: `kill`)."""
    t, b = s.timer, s.tcp_info_bytes
    return SocketOut(_family[s.family], _state[s.state], s.src, s.sport, s.dst, s.dport, s.recv_q, s.send_q,
                     None if t is None else TimerOut(_timer[t.kind], t.expires_ms, t.retrans), s.uid, s.inode,
                     s.cookie, None if owner is None else owner.pid, None if owner is None else owner.name,
                     None if owner is None else owner.user, s.cong, None if b is None else decode_tcp_info_from(b))


def record_line(obj) -> bytes:
    """Any record msgspec encodes (Struct, dataclass, dict of them) as one JSON line (with its newline)."""
    return _encode_lines([obj])




def unix_out(u: UnixSocket, owner: Process | None, with_ns: bool = False) -> UnixOut:
    fields = ("unix", "unix", u.type_name, u.state_name, u.path, u.inode, u.peer, u.recv_q, u.send_q,
              u.uid, u.cookie, None if owner is None else owner.pid, None if owner is None else owner.name,
              None if owner is None else owner.user)
    return UnixNetnsOut(*fields, u.netns) if with_ns else UnixOut(*fields)


def transition_out(t: Transition, with_netns: bool = False) -> TransitionOut:
    fields = (round(t.ts, 6), _family[t.family], t.src, t.sport, t.dst, t.dport, _state[t.old],
              _state[t.new], t.source, None if t.dwell_ms is None else round(t.dwell_ms, 3))
    return TransitionNetnsOut(*fields, t.netns) if with_netns else TransitionOut(*fields)


def transition_lines(transitions: Iterable[Transition], with_netns: bool = False) -> bytes:
    """One JSON object per transition, each on its own line (`sockmon watch --json`); with
    ``with_netns`` (`watch --all-netns`) each also says its namespace ("netns", null when unknown)."""
    return _encode_lines([transition_out(t, with_netns) for t in transitions])


def event_out(event) -> dict:
    """The JSON shape of one engine event (`sockmon.core.lab.events.Event`, or any Struct like it):
    ts, time (the wall clock, when the event has one) and kind first, then every other field that is set;
    ``data`` as text and exact ``hex``."""
    out: dict = {"ts": round(event.ts, 6)}
    wall = getattr(event, "wall", None)
    if wall:
        out["time"] = iso_time(wall)
    out["kind"] = event.kind
    for name in event.__struct_fields__:
        if name in ("ts", "kind", "data", "wall"):
            continue
        value = getattr(event, name)
        if value is not None and value != "":
            out[name] = value
    data = getattr(event, "data", None)
    if data is not None:
        out["data"] = data.decode("utf-8", "backslashreplace")
        out["hex"] = data.hex()
    return out


def event_line(event) -> bytes:
    """One engine event as one JSON line (with its newline)."""
    return _encode_lines([event_out(event)])


class StateTimeOut(Struct, frozen=True, gc=False):
    state: str
    seconds: float | None


class ClosedOut(Struct, frozen=True, gc=False):
    family: str
    src: str
    sport: int
    dst: str
    dport: int
    ended: str
    final_state: str
    opened: str | None  # ISO 8601 UTC; null when the birth was not seen
    closed: str
    lifetime_s: float | None
    birth_seen: bool
    bytes_received: int | None
    bytes_sent: int | None
    bytes_acked: int | None
    total_retrans: int | None
    pid: int | None
    process: str | None
    user: str | None
    uid: int | None
    cookie: int
    states: tuple[StateTimeOut, ...]
    source: str


def closed_out(c) -> ClosedOut:
    """The JSON shape of one closed connection (`sockmon.core.table.closed.ClosedConnection`)."""
    p = c.owner
    return ClosedOut(
        _family[c.family], c.src, c.sport, c.dst, c.dport, c.ended, _state[c.state],
        None if c.opened_wall is None else iso_time(c.opened_wall), iso_time(c.closed_wall),
        None if c.lifetime_s is None else round(c.lifetime_s, 6), c.birth_seen,
        c.bytes_received, c.bytes_sent, c.bytes_acked, c.total_retrans,
        None if p is None else p.pid, None if p is None else p.name, None if p is None else p.user,
        None if c.uid < 0 else c.uid, c.cookie,
        tuple(StateTimeOut(_state[s.state], None if s.seconds is None else round(s.seconds, 6)) for s in c.states),
        c.source)


def closed_lines(records: Iterable) -> bytes:
    """One JSON object per closed connection, each on its own line (`sockmon ls --closed --json`)."""
    return _encode_lines([closed_out(c) for c in records])


def ladder_line(packet) -> bytes:
    """One packet of the ladder (`sockmon.core.lab.ladder.LadderPacket`) as ``{"ladder": {...}}``."""
    return _encode_lines([{"ladder": packet}])


def keyed_line(key: str, value) -> bytes:
    """``{key: value}`` as one JSON line (``ladder_end``, ``ladder_unavailable``)."""
    return _encode_lines([{key: value}])
