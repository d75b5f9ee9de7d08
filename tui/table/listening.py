"""Listening pane: every LISTEN socket (v4 and v6), its accept queue against the backlog as a gauge,
the owner, and the system-wide ListenOverflows / ListenDrops counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.text import Text
from sockmon.core.records import Snapshot, Socket
from sockmon.core.states import LISTEN, STATE_CODES
from sockmon.tui.table.socket_list import SocketListPane
from sockmon.tui.widgets.virtual_table import Column

GAUGE_CELLS = 10


def queue_fill(s: Socket) -> float:
    """accept queue / backlog (recv_q / send_q for a listener); a full queue is 1.0 or more."""
    return s.recv_q / s.send_q if s.send_q else (1.0 if s.recv_q else 0.0)


def gauge(s: Socket, cells: int = GAUGE_CELLS) -> Text:
    frac = queue_fill(s)
    filled = min(cells, round(frac * cells)) if s.recv_q else 0
    if s.recv_q and not filled:
        filled = 1
    color = "#4ec94e" if frac < 0.5 else ("#e5c07b" if frac < 0.9 else "#ff6b6b")
    out = Text("█" * filled, style=color)
    out.append("░" * (cells - filled), style="#555555")
    out.append(f" {s.recv_q}/{s.send_q}", style="bold " + color if s.recv_q else "")
    return out


def _counter(summary, *names: str):
    for name in names:
        value = getattr(summary, name, None)
        if value is not None:
            return value
    return None


class ListeningPane(SocketListPane):
    """Listeners: who waits for connections, and how full their accept queues are."""

    TITLE = "Listening"
    KEY_HINT = "l"
    INITIAL_SORT = "local"
    FILTER_ALWAYS_SHOWN = False
    EMPTY_TEXT = "no listening sockets"
    NARROW_WIDTHS = {"local": 20}
    WIDE_WIDTHS = {"local": 30}

    def columns(self) -> list[Column]:
        return [
            self.local_column(28),
            Column("family", "Fam", 5, get=lambda s: s.family_name),
            Column("queue", "Accept queue / backlog", 23, get=queue_fill, fmt=gauge),
            Column("recv_q", "Queued", 7, get=lambda s: s.recv_q, justify="right"),
            Column("send_q", "Backlog", 8, get=lambda s: s.send_q, justify="right"),
            self.owner_column(24),
            self.user_column(9),
        ]

    @staticmethod
    def wants(s: Socket) -> bool:
        return s.state == LISTEN

    def counts_from(self, summary, rows: list[Socket]) -> Counter:
        by_state = summary.by_state if summary is not None else None
        if by_state is None:
            return super().counts_from(summary, rows)
        return Counter({STATE_CODES[name]: n for name, n in by_state.items()
                        if name in STATE_CODES and (STATE_CODES[name] == LISTEN) is True})

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:
        return [s for s in snapshot.sockets if s.state == LISTEN]

    def info_text(self) -> Text:
        if self.snapshot is None:
            return Text("waiting for the first snapshot…", style="dim italic")
        n = self.counts.get(LISTEN, 0)
        out = Text(f"{n} listener{'s' if n != 1 else ''}", style="bold")
        full = sum(1 for s in self.table.visible_rows() if s is not None and s.send_q and s.recv_q >= s.send_q)
        if full:
            out.append(f"  {full} with a full accept queue", style="bold #ff6b6b")
        overflows = _counter(self.summary, "listen_overflows", "ListenOverflows")
        drops = _counter(self.summary, "listen_drops", "ListenDrops")
        if overflows is not None or drops is not None:
            out.append("   ListenOverflows ", style="dim")
            out.append(str(overflows if overflows is not None else "?"),
                       style="bold #ff6b6b" if overflows else "")
            out.append("  ListenDrops ", style="dim")
            out.append(str(drops if drops is not None else "?"), style="bold #ff6b6b" if drops else "")
        if self.table.filtered:
            out.append(f"   showing {self.table.live_row_count} of {self.table.total_count}", style="bold")
        return out
