"""The one JSON encoder of sockmon's headless output: `ls`, `watch`, `connect` and `serve` (JSON lines).

Every record becomes one JSON object on its own line, written by one ``msgspec.json.Encoder`` (C:
escaping, numbers, nesting). The shapes:

- socket (`ls --json`): family and state by name, the 4-tuple, queues, ``timer`` (name, expires_ms,
  retrans) or null, uid, inode, cookie, the owner (pid, process, user; null when unknown), the
  congestion algorithm and ``tcp_info``: every `TcpInfo` field by name, or null.
- transition (`watch --json`): ts, family, src, sport, dst, dport, old and new state by name, source,
  dwell_ms (null when unknown).
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
from sockmon.core.records import FAMILY_NAMES, Snapshot, Transition
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


CHUNK = 4096  # sockets encoded per piece of `snapshot_lines`: bounded memory, output starts early


def snapshot_lines(snapshot: Snapshot, chunk: int = CHUNK) -> Iterator[bytes]:
    """Every socket of a snapshot, one JSON object per line (`sockmon ls --json`), in pieces of
    ``chunk`` sockets (each piece ends with a newline). this loop is most of
    what `ls --json` costs beyond the dump."""
    owner_of = snapshot.owners.get
    socks = snapshot.sockets
    family, state, timer_name = _family, _state, _timer
    out, timer_out, decode = SocketOut, TimerOut, decode_tcp_info_from
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
            append(out(family[s.family], state[s.state], s.src, s.sport, s.dst, s.dport, s.recv_q, s.send_q,
                       None if t is None else timer_out(timer_name[t.kind], t.expires_ms, t.retrans),
                       s.uid, s.inode, s.cookie, pid, name, user, s.cong, None if b is None else decode(b)))
        yield _encode_lines(rows)


def transition_out(t: Transition) -> TransitionOut:
    return TransitionOut(round(t.ts, 6), _family[t.family], t.src, t.sport, t.dst, t.dport, _state[t.old],
                         _state[t.new], t.source, None if t.dwell_ms is None else round(t.dwell_ms, 3))


def transition_lines(transitions: Iterable[Transition]) -> bytes:
    """One JSON object per transition, each on its own line (`sockmon watch --json`)."""
    return _encode_lines([transition_out(t) for t in transitions])


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


def ladder_line(packet) -> bytes:
    """One packet of the ladder (`sockmon.core.lab.ladder.LadderPacket`) as ``{"ladder": {...}}``."""
    return _encode_lines([{"ladder": packet}])


def keyed_line(key: str, value) -> bytes:
    """``{key: value}`` as one JSON line (``ladder_end``, ``ladder_unavailable``)."""
    return _encode_lines([{key: value}])
