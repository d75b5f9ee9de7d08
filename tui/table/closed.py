"""History pane: the last closed connections (newest first), from the app's `ClosedHistory` model
(`sockmon.core.table.closed`). A `VirtualTable` of records (only visible rows drawn), the shared filter
language (`parse_filter`: a record answers to the same field names as a socket; its state is the last
state before it closed), Enter posts `ClosedActivated` (the app opens the record's screen)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from rich.text import Text
from sockmon.core.table.closed import CONNECT_FAILED, FIN, RST, RST_OR_TIMEOUT, ClosedConnection
from sockmon.tui import fmt
from sockmon.tui.messages import ClosedActivated
from sockmon.tui.theme import state_style
from sockmon.tui.widgets.filter_line import read_filter_line
from sockmon.tui.widgets.quiet import quiet_update
from sockmon.tui.widgets.virtual_table import Column, VirtualTable
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, Static

ENDED_STYLE = {FIN: "#4ec94e", RST: "bold #ff6b6b", RST_OR_TIMEOUT: "bold #e5c07b", CONNECT_FAILED: "#ff6b6b"}


def lifetime_text(c: ClosedConnection) -> str:
    if c.lifetime_s is None:
        return "?"
    s = c.lifetime_s
    if s < 10:
        text = f"{s:.3f}s"
    elif s < 3600:
        text = f"{int(s // 60)}m{s % 60:04.1f}s" if s >= 60 else f"{s:.1f}s"
    else:
        text = f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return text if c.birth_seen else f">{text}"


def closed_at(c: ClosedConnection) -> str:
    import time

    t = time.localtime(c.closed_wall)
    return time.strftime("%H:%M:%S", t) + f".{int(c.closed_wall % 1 * 1000):03d}"


def bytes_text(n: int | None) -> str:
    return "?" if n is None else (str(n) if n < 10_000 else fmt.human_bytes(n))


class ClosedPane(Vertical):
    """Closed connections, newest first."""

    DEFAULT_CSS = """
    ClosedPane { border: round $primary 60%; height: 1fr; }
    ClosedPane:focus-within { border: round $accent; }
    ClosedPane > .pane-info { height: 1; padding: 0 1; }
    ClosedPane .filter-row { height: 1; }
    ClosedPane .filter-row Input { border: none; height: 1; padding: 0 1; width: 1fr; background: $boost; }
    ClosedPane .filter-row Input:focus { background: $accent 20%; }
    ClosedPane .filter-error { height: auto; max-height: 3; padding: 0 1; display: none; }
    ClosedPane .filter-error.-shown { display: block; }
    """

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", show=True),
        Binding("escape", "leave_filter", "Back to table", show=False),
    ]

    def __init__(self, *, id: str | None = "closed", classes: str | None = None) -> None:  # noqa: A002
        self._ready = False
        super().__init__(id=id, classes=classes)
        self.version = -1  # the model's version shown
        self.total = 0
        self.source: str | None = None
        self.filter_error: str | None = None
        # no row marks: the newest are on top, and marks at thousands of closes a second would pile up
        self.table = VirtualTable(self.columns(), key_fn=attrgetter("seq"), sort_column="closed",
                                  sort_reverse=True, new_mark_seconds=0.0, fade_seconds=0.0,
                                  empty_text="no closed connection (since sockmon started, or matching the filter)", id=f"{self.id}-table")

    def columns(self) -> list[Column]:
        """At 80 columns: Closed, Ended, both ends and the lifetime; the rest by priority as width allows
        (tui/widgets/columns.py); Closed and Ended stay put when scrolling sideways."""
        return [
            Column("closed", "Closed", 12, get=attrgetter("seq"), fmt=closed_at, comparable=True, priority=0,
                   frozen=True, help="when it closed (local time)"),
            Column("ended", "Ended", 14, get=attrgetter("ended"),
                   fmt=lambda c: Text(c.ended, style=ENDED_STYLE.get(c.ended, "dim")), comparable=True,
                   priority=1, frozen=True, help="FIN, RST, RST or timeout, connect failed, unknown"),
            Column("local", "Local", 18, get=lambda c: (c.family, c.src, c.sport), fmt=fmt.local_of,
                   overflow="endpoint", comparable=True, priority=2, min_width=13, max_width=30,
                   help="local address:port"),
            Column("peer", "Peer", 18, get=lambda c: (c.family, c.dst, c.dport), fmt=fmt.peer_of,
                   overflow="endpoint", comparable=True, priority=3, min_width=13, max_width=30,
                   help="peer address:port"),
            Column("lifetime", "Lifetime", 9, get=lambda c: c.lifetime_s, fmt=lifetime_text, justify="right",
                   priority=4, help="from birth (SYN) to close; >: birth not seen"),
            Column("owner", "Process", 18, get=lambda c: None if c.owner is None else (c.owner.name, c.owner.pid),
                   fmt=lambda c: fmt.owner_text(c.owner), priority=20, help="owner as last seen"),
            Column("received", "Recv", 9, get=attrgetter("bytes_received"),
                   fmt=lambda c: bytes_text(c.bytes_received), justify="right", priority=30,
                   help="bytes received (tcp_info, last seen)"),
            Column("sent", "Sent", 9, get=attrgetter("bytes_sent"), fmt=lambda c: bytes_text(c.bytes_sent),
                   justify="right", priority=31, help="bytes sent, not counting retransmits (tcp_info, last seen)"),
            Column("state", "Final state", 11, get=attrgetter("state"), fmt=lambda c: c.state_name,
                   style=lambda c: state_style(c.state), comparable=True, priority=40,
                   help="the last state before CLOSE"),
        ]

    def compose(self) -> ComposeResult:
        yield Static(id=f"{self.id}-info", classes="pane-info")
        with Horizontal(classes="filter-row"):
            yield Input(placeholder="/ filter: state port addr:… proc:… (e.g. proc:nginx 443)",
                        id=f"{self.id}-filter", select_on_focus=False)
        yield Static("", id=f"{self.id}-filter-error", classes="filter-error")
        yield self.table

    def on_mount(self) -> None:
        self._ready = True
        self.border_title = Content("History: closed connections [h]")
        self._refresh_info()

    # ------------------------------------------------------------ data in
    def show_records(self, records: Sequence[ClosedConnection], *, version: int, total: int,
                     source: str | None = None) -> None:
        """The model's records (any order: the table sorts); nothing happens when ``version`` is shown."""
        if version == self.version and source == self.source:
            return
        self.version, self.total, self.source = version, total, source
        self.table.set_rows(records)
        self._refresh_info()

    def info_text(self) -> Text:
        n = self.table.total_count
        out = Text(f"{n} closed", style="bold")
        if self.total > n:
            out.append(f" (the last {n} of {self.total})", style="dim")
        if self.table.filtered:
            out.append(f"  showing {self.table.live_row_count}", style="bold")
        if self.source == "inferred":
            out.append("   inferred from snapshots: a FIN is seen only if a refresh caught a FIN state",
                       style="dim italic")
        elif self.source == "tracepoint":
            out.append("   exact (tracepoint); an RST and a timeout look alike to it", style="dim")
        return out

    def _refresh_info(self) -> None:
        if self._ready:
            quiet_update(self.query_one(f"#{self.id}-info", Static), self.info_text())

    # ------------------------------------------------------------ filter
    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != f"{self.id}-filter":
            return
        event.stop()
        self.apply_filter(event.value)

    def apply_filter(self, text: str) -> bool:
        ok, pred, self.filter_error = read_filter_line(text, attrgetter("owner"),
                                                       self.query_one(f"#{self.id}-filter-error", Static))
        if ok:
            self.table.set_filter(pred)
        self._refresh_info()
        return ok

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def action_focus_filter(self) -> None:
        self.query_one(f"#{self.id}-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.table.focus()

    def focus_table(self) -> None:
        self.table.focus()

    # ------------------------------------------------------------ selection out
    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        event.stop()  # a record is no live socket: nothing else follows it

    def on_virtual_table_row_activated(self, event: VirtualTable.RowActivated) -> None:
        event.stop()
        self.post_message(ClosedActivated(event.row))

    @property
    def selected(self) -> ClosedConnection | None:
        return self.table.cursor_row
