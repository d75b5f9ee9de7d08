"""The record of one closed connection (Enter in the History pane): both ends, the owner as last seen,
opened / closed, lifetime, bytes each way, how it ended and the time spent in each state."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from sockmon.core.jsonout import iso_time
from sockmon.core.table.closed import ClosedConnection
from sockmon.tui import fmt
from sockmon.tui.screens.detail import _kv_table
from sockmon.tui.theme import state_text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

ENDED_MEANING = {
    "FIN": "graceful: the close went through the FIN states",
    "RST": "reset: jumped to CLOSE without the FIN states (RST sent or received, SO_LINGER 0, close with "
           "unread data; the kernel event looks the same for a timeout)",
    "RST or timeout": "jumped to CLOSE while retransmissions or keepalive probes went unanswered at the last "
                      "refresh: an RST, or the kernel gave up (ETIMEDOUT)",
    "connect failed": "SYN_SENT -> CLOSE: refused (RST) or the SYN timed out",
    "unknown": "inferred from snapshots: the close fell between two refreshes",
}



def _before_close(c) -> str:
    """How long before the close the counters were read, when it was more than a refresh (the event-driven
    table reads a row off screen only at its state changes and the full dumps)."""
    if c.seen_wall is None:
        return ""
    ago = c.closed_wall - c.seen_wall
    return f"  ({fmt.duration(ago * 1000.0)} before the close: bytes moved since are not counted)" if ago > 1.5 else ""

def record_view(c: ClosedConnection) -> Group:
    life = "?" if c.lifetime_s is None else f"{c.lifetime_s:.6f} s"
    rows = [
        ("ended", Text(c.ended, style="bold")),
        ("meaning", ENDED_MEANING.get(c.ended, "")),
        ("final state", state_text(c.state, bold=True)),
        ("family", c.family_name),
        ("local", fmt.local_of(c)),
        ("peer", fmt.peer_of(c)),
        ("opened", iso_time(c.opened_wall) if c.opened_wall is not None else "not seen (before sockmon watched it)"),
        ("closed", iso_time(c.closed_wall)),
        ("lifetime", life if c.birth_seen else "unknown: the birth was not seen"),
        ("received", "?" if c.bytes_received is None else f"{c.bytes_received} bytes"),
        ("sent", "?" if c.bytes_sent is None else f"{c.bytes_sent} bytes  (bytes_acked {c.bytes_acked})"),
        ("retransmits", "?" if c.total_retrans is None else str(c.total_retrans)),
        ("counters from", "never in a snapshot" if c.seen_wall is None else f"the last reading of it, "
                                                                          f"{iso_time(c.seen_wall)}"
                                                                          f"{_before_close(c)}"),
        ("source", "tracepoint (exact)" if c.source == "tracepoint" else "inferred from snapshots (± the interval)"),
        ("cookie", f"{c.cookie:#x}"),
    ]
    if c.owner is not None:
        p = c.owner
        rows += [("pid", str(p.pid)), ("process", p.name), ("user", p.user),
                 ("cmdline", " ".join(p.cmdline) if p.cmdline else "—")]
    else:
        rows.append(("process", "not known (never seen with an owner)"))
    states = Table.grid(padding=(0, 2))
    states.add_column(no_wrap=True)
    states.add_column(justify="right")
    for st in c.states:
        states.add_row(state_text(st.state), "?" if st.seconds is None else f"{st.seconds * 1000:.3f} ms")
    return Group(_kv_table(rows, 13), Text(""), Text("time in each state", style="bold"), states)


class ClosedScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", show=True)]

    DEFAULT_CSS = """
    ClosedScreen VerticalScroll { padding: 0 1; }
    """

    def __init__(self, record: ClosedConnection) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("Closed connection", style="bold"), id="closed-title")
            yield Static(record_view(self.record), id="closed-body")
        yield Footer(compact=True)
