"""Connections pane: every non-listening TCP socket, state-coloured, with live timer countdowns and each
connection's receive / send rate (the collector's `Rates`, from tcp_info byte counters: blank until a
socket has been seen twice)."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable

from rich.style import Style
from rich.text import Text
from sockmon.core.records import Snapshot, Socket
from sockmon.core.series import NO_RATES, Rates
from sockmon.core.states import LISTEN, STATE_CODES
from sockmon.tui import fmt
from sockmon.tui.table.socket_list import KILL_BINDING, TCP_ONLY, SocketListPane
from sockmon.tui.widgets.virtual_table import Column


def _rtt(s: Socket) -> str:
    v = fmt.rtt_ms(s)
    return "" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")


def _cwnd(s: Socket):
    return s.snd_cwnd  # None without tcp_info; reads 4 bytes, never decodes the whole tcp_info


def _retrans(s: Socket):
    return None if s.tcp_info_bytes is None else (s.total_retrans, s.retransmits)


def _retrans_text(s: Socket) -> str:
    if s.tcp_info_bytes is None:
        return ""
    now, total = s.retransmits, s.total_retrans
    return f"{now}/{total}" if now else str(total)


_IDLE = Style(dim=True)


class ConnectionsPane(SocketListPane):
    """All TCP sockets except listeners."""

    BINDINGS = [KILL_BINDING]

    rates: Rates = NO_RATES  # of the snapshot shown (the app sets them with each snapshot)

    def set_rates(self, rates: Rates | None) -> None:
        """The rates of the snapshot about to be shown (`show_snapshot` redraws)."""
        self.rates = rates if rates is not None else NO_RATES

    def rate_columns(self) -> list[Column]:
        def rx(s: Socket):
            r = self.rates.get(s)
            return None if r is None else r[0]

        def tx(s: Socket):
            r = self.rates.get(s)
            return None if r is None else r[1]

        def idle(get):
            return lambda s: _IDLE if get(s) == 0 else None

        return [
            Column("rx", "Recv/s", 9, get=rx, fmt=lambda s: fmt.rate_text(rx(s)), justify="right", style=idle(rx),
                   priority=35, help="bytes received per second (tcp_info bytes_received, between refreshes)"),
            Column("tx", "Send/s", 9, get=tx, fmt=lambda s: fmt.rate_text(tx(s)), justify="right", style=idle(tx),
                   priority=36, help="bytes acknowledged by the peer per second (tcp_info bytes_acked)"),
        ]

    TITLE = "Connections"
    KEY_HINT = "c"

    def on_mount(self) -> None:
        super().on_mount()
        self.border_subtitle = "g: by process"
    INITIAL_SORT = "state"  # stable: kernel order within a state
    EMPTY_TEXT = "no connections (only listeners, or nothing matches the filter)"

    def columns(self) -> list[Column]:
        """At 80 columns: State, Local, Peer, Process; the others by priority as the width allows."""

        def timer_sort(s: Socket):
            return None if s.timer is None or not s.timer.kind else s.timer.expires_ms

        return [
            self.netns_column(),  # shown only when every namespace is
            self.state_column(11),
            self.local_column(),
            self.peer_column(),
            self.owner_column(),
            Column("recv_q", "Recv-Q", 7, get=operator.attrgetter("recv_q"), justify="right", comparable=True,
                   priority=30, help="bytes received, not yet read by the application"),
            Column("send_q", "Send-Q", 7, get=operator.attrgetter("send_q"), justify="right", comparable=True,
                   priority=31, help="bytes sent, not yet acknowledged by the peer"),
            *self.rate_columns(),
            Column("timer", "Timer", 19, get=timer_sort, priority=40,
                   fmt=lambda s: fmt.timer_text(s.timer, self.elapsed_ms()),
                   help="the running timer and its countdown (on = retransmit), rN: retransmits / probes"),
            Column("rtt", "RTT ms", 7, get=fmt.rtt_ms, fmt=_rtt, justify="right", priority=50,
                   help="smoothed round-trip time (tcp_info)"),
            Column("cwnd", "cwnd", 5, get=_cwnd, justify="right", priority=60,
                   help="congestion window, segments (tcp_info)"),
            Column("retrans", "Retr", 5, get=_retrans, fmt=_retrans_text, justify="right", priority=70,
                   help="retransmits: outstanding/total (tcp_info)"),
            self.user_column(9),
            self.family_column(priority=90),
        ]

    @staticmethod
    def wants(s: Socket) -> bool:
        return s.state != LISTEN

    def counts_from(self, summary, rows: list[Socket]) -> Counter:
        by_state = summary.by_state if summary is not None else None
        if by_state is None or self.socket_types != TCP_ONLY:
            return super().counts_from(summary, rows)
        return Counter({STATE_CODES[name]: n for name, n in by_state.items()
                        if name in STATE_CODES and (STATE_CODES[name] == LISTEN) is False})

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:
        return self.connected_rows(snapshot)

    def info_text(self) -> Text:
        if self.snapshot is None:
            return Text("waiting for the first snapshot…", style="dim italic")
        return self.counts_line()
