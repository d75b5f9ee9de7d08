"""Decoding the binary ring-buffer pages of ``per_cpu/cpuN/trace_pipe_raw`` (sans-IO, fuzzable).

No file is read here: `parse_format`, `parse_header_page` and `parse_header_event` take the text of the
tracefs files ``events/sock/inet_sock_set_state/format``, ``events/header_page`` and
``events/header_event``; `TransitionDecoder.decode_page` takes the bytes of one page and returns
``(ts, family, src, sport, dst, dport, old, new)`` tuples — the same fields the text reader
(core/table/tracepoint.py ``parse_line``) takes from ``trace_pipe`` — plus the page's missed-events
count. Anything malformed raises `TraceRawError` (one line); nothing else escapes, and every loop
advances by at least 4 bytes, so a page never makes it spin. Layout facts: docs/kernel-facts.md §3.

A page (``header_page``): ``u64 timestamp`` (the clock of the instance, ns for ``mono``), ``local_t
commit`` (the low 27 bits are the bytes of event data; bit 31 = events were lost before this page,
bit 30 = their count is stored as a ``long`` right after the data), then the events. Each event starts
with a 32-bit word: ``type_len`` (low 5 bits) and ``time_delta`` (high 27 bits, ns since the previous
event). ``type_len`` 1..28: data of ``4 × type_len`` bytes follows; 0: the next 32-bit word is the length
(itself included), then data; 29 padding (``time_delta`` 0: the rest of the page, else the length
follows); 30 time extend (delta = next word << 27 | time_delta); 31 absolute time stamp (same
encoding, the low 59 bits of the time).
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass

from sockmon.core.errors import SockmonError
from sockmon.core.states import STATE_CODES

MISSED_EVENTS = 1 << 31  # commit flag: events were lost between the previous page and this one
MISSED_STORED = 1 << 30  # commit flag: their count is stored after the data
COMMIT_MASK = (1 << 27) - 1  # the data size part of commit (as libtraceevent's kbuffer reads it)
TS_MSB = ((1 << 64) - 1) ^ ((1 << 59) - 1)  # an absolute time stamp event carries only the low 59 bits
_STATES = frozenset(STATE_CODES.values())
_V4 = socket.AF_INET.value
_V6 = socket.AF_INET6.value
# the fields of sock:inet_sock_set_state the records are made of (protocol is filtered in the kernel)
WANTED = ("common_type", "oldstate", "newstate", "sport", "dport", "family", "saddr", "daddr",
          "saddr_v6", "daddr_v6")
_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I", (4, True): "i",
              (8, False): "Q", (8, True): "q"}
_ADDR_CACHE_MAX = 65_536


class TraceRawError(SockmonError):
    """A tracefs format file or a ring-buffer page that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    offset: int
    size: int
    signed: bool
    array: bool  # declared with [N]: bytes


@dataclass(frozen=True, slots=True)
class EventFormat:
    name: str
    id: int
    fields: dict[str, Field]


@dataclass(frozen=True, slots=True)
class PageLayout:
    ts_offset: int
    ts_size: int
    commit_offset: int
    commit_size: int
    data_offset: int
    data_size: int

    @property
    def page_size(self) -> int:
        return self.data_offset + self.data_size


@dataclass(frozen=True, slots=True)
class EventHeader:
    type_len_bits: int = 5
    time_delta_bits: int = 27
    padding: int = 29
    time_extend: int = 30
    time_stamp: int = 31
    data_max: int = 28


_FIELD_RE = re.compile(r"^\s*field:\s*(?P<decl>[^;]*);\s*offset:\s*(?P<off>\d+);\s*size:\s*(?P<size>\d+);"
                       r"(?:\s*signed:\s*(?P<signed>-?\d+);)?")


def _fields(text: str) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for line in text.splitlines():
        m = _FIELD_RE.match(line)
        if m is None:
            continue
        decl = m["decl"].strip()
        array = "[" in decl
        name = decl.split("[", 1)[0].split()[-1] if decl.split("[", 1)[0].split() else ""
        name = name.lstrip("*")
        if not name:
            continue
        out[name] = Field(name, int(m["off"]), int(m["size"]), m["signed"] == "1", array)
    return out


def parse_format(text: str) -> EventFormat:
    """The name, id and fields of an event's ``format`` file."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    ident = re.search(r"^ID:\s*(\d+)", text, re.M)
    if name is None or ident is None:
        raise TraceRawError("event format file without name: or ID:")
    fields = _fields(text)
    missing = [f for f in WANTED if f not in fields]
    if missing:
        raise TraceRawError(f"event format of {name[1]} lacks the field(s) {', '.join(missing)}")
    return EventFormat(name[1], int(ident[1]), fields)


def parse_header_page(text: str) -> PageLayout:
    """The page header layout from ``events/header_page``."""
    f = _fields(text)
    try:
        ts, commit, data = f["timestamp"], f["commit"], f["data"]
    except KeyError as exc:
        raise TraceRawError(f"header_page lacks the field {exc.args[0]}") from None
    if ts.size != 8 or commit.size not in (4, 8) or data.offset < max(ts.offset + 8, commit.offset + commit.size) \
            or data.size < 64:
        raise TraceRawError(f"unexpected header_page layout: {ts}, {commit}, {data}")
    return PageLayout(ts.offset, ts.size, commit.offset, commit.size, data.offset, data.size)


def parse_header_event(text: str) -> EventHeader:
    """The event header encoding from ``events/header_event`` (checked against what this module decodes)."""
    bits = dict(re.findall(r"^\s*(type_len|time_delta|array)\s*:\s*(\d+)\s*bits", text, re.M))
    types = dict(re.findall(r"^\s*(padding|time_extend|time_stamp)\s*:\s*type\s*==\s*(\d+)", text, re.M))
    dmax = re.search(r"data max type_len\s*==\s*(\d+)", text)
    try:
        hdr = EventHeader(int(bits["type_len"]), int(bits["time_delta"]), int(types["padding"]),
                          int(types["time_extend"]), int(types["time_stamp"]), int(dmax[1]) if dmax else -1)
    except KeyError as exc:
        raise TraceRawError(f"header_event lacks {exc.args[0]}") from None
    if hdr != EventHeader():
        raise TraceRawError(f"unsupported ring-buffer event header {hdr}")
    return hdr


def _entry_struct(fmt: EventFormat) -> tuple[struct.Struct, int]:
    """A struct over the wanted fields (in offset order, pad bytes between) and each field's place in it."""
    fields = sorted((fmt.fields[n] for n in WANTED), key=lambda f: f.offset)
    codes = ["="]
    at = 0
    for f in fields:
        if f.offset < at:
            raise TraceRawError(f"field {f.name} overlaps the previous one")
        if f.offset > at:
            codes.append(f"{f.offset - at}x")
        if f.array or f.name in ("saddr", "daddr", "saddr_v6", "daddr_v6"):
            codes.append(f"{f.size}s")
        else:
            code = _INT_CODES.get((f.size, f.signed))
            if code is None:
                raise TraceRawError(f"field {f.name}: unsupported size {f.size}")
            codes.append(code)
        at = f.offset + f.size
    for name, size in (("saddr", 4), ("daddr", 4), ("saddr_v6", 16), ("daddr_v6", 16)):
        if fmt.fields[name].size != size:
            raise TraceRawError(f"field {name} has {fmt.fields[name].size} bytes, expected {size}")
    return struct.Struct("".join(codes)), at


class TransitionDecoder:
    """Pages of ``trace_pipe_raw`` → transition tuples, for one event format and page layout."""

    def __init__(self, fmt: EventFormat, layout: PageLayout, header: EventHeader | None = None) -> None:
        self.fmt = fmt
        self.layout = layout
        self.header = header or EventHeader()
        self._entry, self.entry_size = _entry_struct(fmt)
        order = sorted(WANTED, key=lambda n: fmt.fields[n].offset)
        self._order = tuple(order.index(n) for n in WANTED)  # WANTED position → struct result position
        ctype = fmt.fields["common_type"]
        self._type = struct.Struct("=" + _INT_CODES.get((ctype.size, False), "H"))
        self._ts = struct.Struct("=Q")
        self._commit = struct.Struct("=Q" if layout.commit_size == 8 else "=I")
        self._missed = struct.Struct("=q" if layout.commit_size == 8 else "=i")
        self._v4: dict[bytes, str] = {}
        self._v6: dict[bytes, str] = {}

    @property
    def page_size(self) -> int:
        return self.layout.page_size

    def decode_page(self, page: bytes) -> tuple[list[tuple], int]:
        """(records, missed): records oldest first as (ts seconds, family, src, sport, dst, dport, old, new);
        missed = events lost before this page (the stored count; 1 when only flagged; 0 when none)."""
        lay = self.layout
        fmt_type = self.fmt.fields["common_type"]
        n = len(page)
        if n < lay.data_offset:
            raise TraceRawError(f"short ring-buffer page: {n} bytes, the header alone is {lay.data_offset}")
        ts = self._ts.unpack_from(page, lay.ts_offset)[0]
        commit = self._commit.unpack_from(page, lay.commit_offset)[0]
        size = commit & COMMIT_MASK
        end = lay.data_offset + size
        if size > lay.data_size or end > n:
            raise TraceRawError(f"ring-buffer page commit {size} runs past the page ({n} bytes)")
        missed = 0
        if commit & MISSED_EVENTS:
            missed = 1
            if commit & MISSED_STORED and end + self._missed.size <= n:
                missed = max(1, self._missed.unpack_from(page, end)[0])
        out: list[tuple] = []
        append = out.append
        word_at = _U32.unpack_from
        entry_at = self._entry.unpack_from
        entry_size = self.entry_size
        event_id = self.fmt.id
        order = self._order
        type_at = self._type.unpack_from
        type_off = fmt_type.offset
        type_end = fmt_type.offset + fmt_type.size
        i_type, i_old, i_new, i_sport, i_dport, i_fam, i_sa, i_da, i_sa6, i_da6 = order
        states = _STATES
        v4 = self._v4
        v6 = self._v6
        pos = lay.data_offset
        while pos + 4 <= end:
            word = word_at(page, pos)[0]
            type_len = word & 31
            delta = word >> 5
            if 1 <= type_len <= 28:
                data = pos + 4
                nxt = data + 4 * type_len
            elif type_len == 0:
                if pos + 8 > end:
                    raise TraceRawError(f"event length word past the commit at {pos}")
                length = word_at(page, pos + 4)[0]
                if length < 4:
                    raise TraceRawError(f"event length {length} at {pos}")
                data = pos + 8
                nxt = pos + 4 + ((length + 3) & ~3)
            elif type_len == 29:  # padding: time_delta 0 = the rest of the page is unused
                if delta == 0:
                    break
                if pos + 8 > end:
                    raise TraceRawError(f"padding length word past the commit at {pos}")
                nxt = pos + 4 + max(4, (word_at(page, pos + 4)[0] + 3) & ~3)
                if nxt > end:
                    raise TraceRawError(f"padding at {pos} runs past the commit")
                pos = nxt
                continue
            else:  # 30 time extend, 31 absolute time stamp
                if pos + 8 > end:
                    raise TraceRawError(f"time event at {pos} runs past the commit")
                value = (word_at(page, pos + 4)[0] << 27) | delta
                if type_len == 30:
                    ts += value
                else:
                    if ts & TS_MSB:
                        value |= ts & TS_MSB
                        if value < ts:
                            value += 1 << 59
                    ts = value
                pos += 8
                continue
            if nxt > end:
                raise TraceRawError(f"event at {pos} runs past the commit ({nxt} > {end})")
            ts += delta
            pos = nxt
            if nxt - data < entry_size:
                if nxt - data >= type_end and type_at(page, data + type_off)[0] == event_id:
                    raise TraceRawError(f"event at {data} shorter ({nxt - data} bytes) than its format ({entry_size})")
                continue
            rec = entry_at(page, data)
            if rec[i_type] != event_id:
                continue  # another event (none is enabled in the private instance)
            family = rec[i_fam]
            old = rec[i_old]
            new = rec[i_new]
            if old not in states or new not in states:
                continue
            if family == _V4:
                raw_s, raw_d, cache, af, cut = rec[i_sa], rec[i_da], v4, _V4, 4
            elif family == _V6:
                raw_s, raw_d, cache, af, cut = rec[i_sa6], rec[i_da6], v6, _V6, 16
            else:
                continue
            src = cache.get(raw_s)
            if src is None:
                src = _remember(cache, raw_s, socket.inet_ntop(af, raw_s[:cut]))
            dst = cache.get(raw_d)
            if dst is None:
                dst = _remember(cache, raw_d, socket.inet_ntop(af, raw_d[:cut]))
            append((ts / 1e9, family, src, rec[i_sport], dst, rec[i_dport], old, new))
        return out, missed


_U32 = struct.Struct("=I")


def _remember(cache: dict[bytes, str], raw: bytes, text: str) -> str:
    if len(cache) >= _ADDR_CACHE_MAX:
        cache.clear()
    cache[raw] = text
    return text
