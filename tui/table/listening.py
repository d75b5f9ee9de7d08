"""Listening pane: every LISTEN socket (v4 and v6), its accept queue against the backlog as a gauge,
the owner, and the system-wide ListenOverflows / ListenDrops counters. With UDP shown (the app's socket
type toggle) the bound, unconnected UDP sockets stand beside them, marked udp / udp6 in the Fam column;
with UNIX shown, the UNIX listeners (u_str / u_seq, their accept queue and backlog)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import compress

from rich.text import Text
from sockmon.core.records import SOCKET_STATE, Snapshot, Socket
from sockmon.core.states import CLOSE, LISTEN, STATE_CODES
from sockmon.tui import fmt
from sockmon.tui.table.socket_list import KILL_BINDING, TCP_ONLY, SocketListPane, row_protocol
from sockmon.tui.widgets.virtual_table import Column

GAUGE_CELLS = 10
UDP = 17  # socket.IPPROTO_UDP


def family_text(s) -> str:
    """The Fam column: v4 / v6 for TCP listeners; a UDP bound socket is marked udp / udp6, a UNIX
    listener by its type (u_str, u_seq)."""
    if s.protocol == 6:
        return fmt.family_word(s)
    if s.protocol == UDP:
        return "udp" if s.family == 2 else "udp6"
    return row_protocol(s)


def queue_fill(s: Socket) -> float:
    """accept queue / backlog (recv_q / send_q for a listener); a full queue is 1.0 or more."""
    return s.recv_q / s.send_q if s.send_q else (1.0 if s.recv_q else 0.0)


def gauge(s: Socket, cells: int = GAUGE_CELLS) -> Text:
    if s.protocol == UDP:
        return Text("UDP: no accept queue", style="dim italic")
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

    BINDINGS = [KILL_BINDING]
    TITLE = "Listening"
    KEY_HINT = "l"
    INITIAL_SORT = "local"
    FILTER_ALWAYS_SHOWN = False
    EMPTY_TEXT = "no listening sockets"

    def columns(self) -> list[Column]:
        """At 80 columns: Local, the accept queue gauge, Process; the others as the width allows."""
        return [
            self.local_column(21, max_width=32, priority=0),
            Column("queue", "Accept queue / backlog", 23, get=queue_fill, fmt=gauge, priority=10,
                   help="connections waiting for accept() against the backlog"),
            self.owner_column(21, priority=20),
            Column("family", "Fam", 5, get=family_text, fmt=family_text, priority=30,
                   help="v4 / v6 for TCP listeners; udp / udp6 for a bound UDP socket, u_str / u_seq for UNIX"),
            Column("recv_q", "Queued", 7, get=lambda s: s.recv_q, justify="right", priority=40,
                   help="accept queue length now"),
            Column("send_q", "Backlog", 8, get=lambda s: None if s.protocol == UDP else s.send_q, justify="right",
                   priority=41, help="the listener's backlog (listen() argument, capped by somaxconn)"),
            self.netns_column(),  # shown only when every namespace is
            self.user_column(9),
        ]

    @staticmethod
    def wants(s: Socket) -> bool:
        return s.state == LISTEN

    def counts_from(self, summary, rows: list[Socket]) -> Counter:
        by_state = summary.by_state if summary is not None else None
        if by_state is None or self.socket_types != TCP_ONLY:  # UDP / UNIX: count the rows themselves
            return super().counts_from(summary, rows)
        return Counter({STATE_CODES[name]: n for name, n in by_state.items()
                        if name in STATE_CODES and (STATE_CODES[name] == LISTEN) is True})

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:
        types = self.socket_types
        socks = snapshot.sockets  # selected in C: no Python call per socket
        rows = list(compress(socks, map(LISTEN.__eq__, map(SOCKET_STATE, socks)))) if "tcp" in types else []
        if "udp" in types:  # bound and unconnected: where datagrams arrive (ss -ul)
            rows += [s for s in snapshot.udp if s.state == CLOSE]
        if "unix" in types:
            rows += [u for u in snapshot.unix if u.state == LISTEN]
        return rows

    def info_text(self) -> Text:
        if self.snapshot is None:
            return Text("waiting for the first snapshot…", style="dim italic")
        n = self.counts.get(LISTEN, 0)
        out = Text(f"{n} listener{'s' if n != 1 else ''}", style="bold")
        if "udp" in self.socket_types:
            out.append(f"  {self.counts.get(CLOSE, 0)} UDP bound", style="bold")
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
