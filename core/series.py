"""Per-connection rates and sample rings: the words the socket table (`core/table/rates.py` computes
`Rates`) and the lab's timeline (`core/lab/timeline.py` keeps a `SampleRing`) share. No I/O, no Textual.

`Rates` is one tick's receive and send rate of every socket in a snapshot, from the kernel's own byte
counters in ``struct tcp_info``: ``bytes_received`` (receive) and ``bytes_acked`` (send: what the peer
has acknowledged), the change since the previous snapshot divided by the time between the two
snapshots' ``taken_at``. `Rates.get(sock)` is ``(rx_bps, tx_bps)`` in bytes per second, or None when
there is no rate (yet): a socket seen for the first time, one without tcp_info (TIME_WAIT, request
sockets, /proc/net/tcp), one whose counters went backwards (a new socket under a reused key), one not
in that snapshot.

`SampleRing` is the last `SAMPLES` refreshes of one followed connection (rtt, cwnd, rates,
retransmissions), for sparklines; bounded (a deque), cleared when the followed connection changes.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from msgspec import Struct
from sockmon.core.records import Socket

ZERO: tuple[float, float] = (0.0, 0.0)  # the rate of every socket whose counters did not move (shared)
SAMPLES = 60  # refreshes a SampleRing keeps (oldest dropped first)

# bytes_acked and bytes_received: two u64 right after pacing_rate and max_pacing_rate in struct tcp_info
# (linux/tcp.h; sockmon.core.tcpinfo's layout). A Socket keeps those 16 bytes inside tcp_info_bytes.
OFFSET_BYTES_ACKED = 120
COUNTERS = slice(OFFSET_BYTES_ACKED, OFFSET_BYTES_ACKED + 16)
unpack_counters = struct.Struct("=2Q").unpack  # the 16 bytes → (bytes_acked, bytes_received)

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Rates:
    """Rates of one snapshot's sockets, keyed by cookie (netlink; the only source with tcp_info).

    ``counters``: cookie → the 16 counter bytes of every socket of the snapshot that has tcp_info;
    ``moving``: cookie → (rx_bps, tx_bps) of the sockets whose counters moved; ``fresh``: the cookies with
    no rate (first sighting, counters reset). Every other socket in ``counters`` had (0.0, 0.0).
    """

    taken_at: float  # the snapshot's taken_at
    seconds: float | None  # time since the previous snapshot (None: the first one, no rates at all)
    counters: Mapping[int, bytes] = field(default_factory=lambda: _EMPTY)
    moving: Mapping[int, tuple[float, float]] = field(default_factory=lambda: _EMPTY)
    fresh: frozenset[int] = frozenset()

    def get(self, sock: Socket) -> tuple[float, float] | None:
        """(rx_bps, tx_bps) of ``sock`` in this snapshot, or None (no rate: see the module doc)."""
        key = sock.cookie
        if self.seconds is None or key not in self.counters or key in self.fresh:
            return None
        return self.moving.get(key, ZERO)

    def rx(self, sock: Socket) -> float | None:
        r = self.get(sock)
        return None if r is None else r[0]

    def tx(self, sock: Socket) -> float | None:
        r = self.get(sock)
        return None if r is None else r[1]

    def __len__(self) -> int:
        """Sockets this holds counters of (the snapshot's sockets with tcp_info)."""
        return len(self.counters)


NO_RATES = Rates(0.0, None)


RATE_UNITS = ("B/s", "kB/s", "MB/s", "GB/s", "TB/s")  # SI: 1 kB/s = 1000 B/s, 1 MB/s = 10⁶ B/s


def rate_text(bps: float | None) -> str:
    """A rate in bytes per second, SI units (powers of 1000), three significant digits: ``812 B/s``,
    ``12.3 kB/s``, ``9.87 MB/s``. None (no rate yet) is blank, never 0."""
    if bps is None:
        return ""
    value = float(bps)
    for unit in RATE_UNITS:
        if abs(value) < 999.5 or unit == RATE_UNITS[-1]:
            if unit == "B/s" or abs(value) >= 99.95:
                return f"{value:.0f} {unit}"
            return f"{value:.2f} {unit}" if abs(value) < 9.995 else f"{value:.1f} {unit}"
        value /= 1000.0
    return f"{value:.0f} TB/s"  # pragma: no cover


class Sample(Struct, frozen=True, gc=False):
    """One refresh of one connection; None where the kernel said nothing (no tcp_info, no rate yet)."""

    ts: float  # the snapshot's taken_at (monotonic)
    rtt_us: int | None
    cwnd: int | None
    rx_bps: float | None
    tx_bps: float | None
    total_retrans: int | None  # cumulative; a sparkline shows its change per refresh


def sample_of(sock: Socket, rates: Rates | None, ts: float) -> Sample:
    """The sample of ``sock`` at ``ts`` (4 fields read from its tcp_info bytes, never a full decode)."""
    r = rates.get(sock) if rates is not None else None
    if sock.tcp_info_bytes is None:
        return Sample(ts, None, None, None if r is None else r[0], None if r is None else r[1], None)
    return Sample(ts, sock.rtt, sock.snd_cwnd, None if r is None else r[0], None if r is None else r[1],
                  sock.total_retrans)


class SampleRing:
    """The last ``size`` samples of one connection, oldest first. A sample at the same ``ts`` as the
    newest replaces it (the same snapshot seen twice); an older one is ignored."""

    def __init__(self, size: int = SAMPLES) -> None:
        self.size = size
        self._items: deque[Sample] = deque(maxlen=size)

    def add(self, sample: Sample) -> None:
        items = self._items
        if items and sample.ts <= items[-1].ts:
            if sample.ts == items[-1].ts:
                items[-1] = sample
            return
        items.append(sample)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._items)

    @property
    def has_data(self) -> bool:
        """Some sample says something (a connection followed only as a TIME_WAIT row has only blanks)."""
        return any(s.rtt_us is not None or s.rx_bps is not None or s.cwnd is not None for s in self._items)

    @property
    def latest(self) -> Sample | None:
        return self._items[-1] if self._items else None

    def series(self, name: str) -> list:
        """One field of every sample, oldest first (None where unknown)."""
        return [getattr(s, name) for s in self._items]

    def retrans_deltas(self) -> list[int | None]:
        """Retransmissions per refresh: the change of total_retrans since the previous sample (None for
        the first, or when either is unknown; a counter that went back counts from 0)."""
        out: list[int | None] = []
        prev = None
        for s in self._items:
            cur = s.total_retrans
            out.append(None if cur is None or prev is None else (cur - prev if cur >= prev else cur))
            prev = cur
        return out
