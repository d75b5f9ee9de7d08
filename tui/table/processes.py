"""Process view (like nethogs): connections grouped by owning process — count, states, summed receive and
send rates — busiest first. A toggle of the Listening+Connections tab (``g``), in the Connections pane's
place; Enter on a process shows its connections (the Connections pane filtered to ``pid:N``). The totals are computed by the collector (`ProcessTotal`, core/table/rates.py: every socket but
listeners; sockets with no known owner are one row, pid 0) while this view is shown; this pane only
draws them."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from sockmon.core.states import STATE_CODES
from sockmon.core.table.rates import ProcessTotal
from sockmon.core.text import inert
from sockmon.tui import fmt
from sockmon.tui.messages import ProcessActivated
from sockmon.tui.theme import counts_text
from sockmon.tui.widgets.quiet import quiet_update
from sockmon.tui.widgets.virtual_table import Column, VirtualTable
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

_IDLE = Style(dim=True)
NO_OWNER = "(no owner)"  # TIME_WAIT, orphans, other users' sockets without root


def _name(t: ProcessTotal) -> Text | str:
    return inert(t.name) if t.pid else Text(NO_OWNER, style="dim italic")


def _states(t: ProcessTotal) -> Text:
    return counts_text({STATE_CODES.get(name, -1): n for name, n in t.states}, sep=" ")


def _total(t: ProcessTotal) -> float | None:
    return t.total_bps


def _idle(get):
    return lambda t: _IDLE if get(t) == 0 else None


class ProcessesPane(Vertical):
    """Per-process totals of connections and throughput."""

    DEFAULT_CSS = """
    ProcessesPane { border: round $primary 60%; height: 1fr; }
    ProcessesPane:focus-within { border: round $accent; }
    ProcessesPane > .pane-info { height: 1; padding: 0 1; }
    """

    TITLE = "Processes"
    KEY_HINT = "g"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.totals: tuple[ProcessTotal, ...] | None = None
        self.seconds: float | None = None
        self.table = VirtualTable(self.columns(), key_fn=operator.attrgetter("pid"), sort_column="total",
                                  sort_reverse=True, empty_text="no connections", id=f"{id or 'processes'}-table",
                                  new_mark_seconds=0, fade_seconds=0)

    def columns(self) -> list[Column]:
        rx, tx = operator.attrgetter("rx_bps"), operator.attrgetter("tx_bps")
        return [
            Column("process", "Process", 18, get=lambda t: (t.pid == 0, t.name), fmt=_name),
            Column("pid", "PID", 7, get=operator.attrgetter("pid"), fmt=lambda t: str(t.pid) if t.pid else "",
                   justify="right", comparable=True),
            Column("user", "User", 9, get=operator.attrgetter("user")),
            Column("conns", "Conns", 6, get=operator.attrgetter("connections"), justify="right", comparable=True),
            Column("rx", "Recv/s", 9, get=rx, fmt=lambda t: fmt.rate_text(t.rx_bps), justify="right",
                   style=_idle(rx)),
            Column("tx", "Send/s", 9, get=tx, fmt=lambda t: fmt.rate_text(t.tx_bps), justify="right",
                   style=_idle(tx)),
            Column("total", "Total/s", 9, get=_total, fmt=lambda t: fmt.rate_text(t.total_bps), justify="right",
                   style=_idle(_total)),
            Column("states", "States", 40, get=lambda t: t.states, fmt=_states),
        ]

    def compose(self) -> ComposeResult:
        yield Static(id=f"{self.id}-info", classes="pane-info")
        yield self.table

    def on_mount(self) -> None:
        self.border_title = Content(f"{self.TITLE} [{self.KEY_HINT}: back to connections]")
        self._refresh_info()

    def show_totals(self, totals: Sequence[ProcessTotal] | None, seconds: float | None = None) -> None:
        """The collector's totals of the newest snapshot (None: not computed yet)."""
        self.totals = None if totals is None else tuple(totals)
        self.seconds = seconds
        self.table.set_rows(self.totals or ())
        self._refresh_info()

    def focus_table(self) -> None:
        self.table.focus()

    @property
    def selected(self) -> ProcessTotal | None:
        return self.table.cursor_row

    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        event.stop()  # a process row is no socket: nothing to tell the other panes

    def on_virtual_table_row_activated(self, event: VirtualTable.RowActivated) -> None:
        event.stop()
        if event.row is not None:
            self.post_message(ProcessActivated(event.row.pid))

    def info_text(self) -> Text:
        totals = self.totals
        if totals is None:
            return Text("totalling connections per process…", style="dim italic")
        conns = sum(t.connections for t in totals)
        procs = sum(1 for t in totals if t.pid)
        out = Text(f"{procs} process{'es' if procs != 1 else ''}, {conns} connection{'s' if conns != 1 else ''}",
                   style="bold")
        known = [t for t in totals if t.rx_bps is not None]
        if known:
            out.append("   recv ", style="dim")
            out.append(fmt.rate_text(sum(t.rx_bps or 0.0 for t in known)))
            out.append("  send ", style="dim")
            out.append(fmt.rate_text(sum(t.tx_bps or 0.0 for t in known)))
        if self.seconds:
            out.append(f"   rates over the last {self.seconds:.2f} s", style="dim")
        else:
            out.append("   rates: blank until each connection has been seen twice", style="dim")
        return out

    def _refresh_info(self) -> None:
        if self.is_mounted:
            quiet_update(self.query_one(f"#{self.id}-info", Static), self.info_text())
