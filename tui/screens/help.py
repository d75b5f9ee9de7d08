"""Help screen (``?``): panes, keys, the filter language and the state colours."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from sockmon.core.states import STATE_NAMES
from sockmon.tui.theme import STATE_ORDER, state_text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

PANES = [
    ("1  l", "Listening", "every LISTEN socket (v4/v6), accept queue vs backlog, owner, ListenOverflows/Drops"),
    ("1  c", "Connections", "every other TCP socket: state, ends, queues, timer countdown, rtt, cwnd, owner"),
    ("2  k", "Keepalive", "sysctls, sockets with a keepalive timer, SO_KEEPALIVE of the selected socket"),
    ("3", "Client", "the built-in client: Target has the focus (type HOST:PORT, Enter connects, then type "
                    "lines to send: each gets its ending, CRLF by default), one-key options, shutdown/close/abort"),
    ("4", "Server", "the built-in server: start/stop, modes (m picks one), its clients sorted by peer, the accept "
                    "queue, send to one client or all, per-client actions"),
    ("5  t", "Timeline", "the life of the selected connection (or our client): calls, states, bytes"),
    ("6", "Scenarios", "guided TCP scenarios (TIME_WAIT, CLOSE_WAIT, linger 0…): Enter runs one, each step "
                       "checked against the kernel, its rows highlighted in Connections; x stops it"),
]

KEYS = [
    ("↑ ↓ PgUp PgDn Home End", "move the cursor in a socket list"),
    ("← →", "scroll a wide table sideways"),
    ("Enter / double click", "Detail screen of the socket under the cursor"),
    ("o", "socket options: SO_LINGER / keepalive of the selected socket, read back from the kernel "
          "(another process's after confirmation, as root)"),
    ("s / S / < >", "sort by the next column / reverse / previous, next column (or click a header)"),
    ("/", "filter the Connections list as you type (Enter or Esc: back to the table)"),
    ("Tab / Shift+Tab", "next / previous field or button; Esc leaves a field, Enter applies it"),
    ("Alt+1 … Alt+5", "switch panes from inside a text field too (there digits are text)"),
    ("p", "pause / resume collection (countdowns freeze with the snapshot; r still refreshes once)"),
    ("r", "refresh now"),
    ("+ / -", "slower / faster refresh (interval up / down)"),
    ("Ctrl+P", "command palette: every action by name"),
    ("?", "this help"),
    ("q / Ctrl+Q", "quit"),
]

FILTER = [
    ("established  state:time_wait", "state (case-insensitive, TCP_ prefix optional)"),
    ("8080  :8080  port:8080", "local or peer port; sport:N / dport:N for one side"),
    ("addr:127.0.0  src:…  dst:…", "address substring"),
    ("proc:python  pid:1234  user:root", "owner process"),
    ("v4  v6", "address family"),
    ("-time_wait  !8080", "negate a term; terms are AND-ed"),
    ("anything else", "substring of either address or the process name"),
]


def _binding_rows(bindings) -> list[tuple[str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description and b.key != "escape":
            rows.append((b.key.replace(",", " / "), b.tooltip or b.description))
    return rows


def lab_key_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """The lab panes' keys, read from their own BINDINGS so help never drifts from what works."""
    from sockmon.tui.lab.client import ClientPane
    from sockmon.tui.lab.server import ServerPane
    from sockmon.tui.lab.timeline import TimelinePane

    note = " (when no input field has focus — a focused field is highlighted; Esc leaves it)"
    return [
        ("Client pane (3)" + note, _binding_rows(ClientPane.BINDINGS)),
        ("Server pane (4)" + note, _binding_rows(ServerPane.BINDINGS)),
        ("Timeline pane (5)", _binding_rows(TimelinePane.BINDINGS)),
    ]


def help_renderable() -> Table:
    outer = Table.grid(padding=(0, 0))
    outer.add_column()

    def section(title: str, rows, key_style="bold #56b6c2") -> None:
        outer.add_row(Text(title, style="bold underline"))
        t = Table.grid(padding=(0, 2))
        t.add_column(style=key_style, no_wrap=True)
        t.add_column()
        for row in rows:
            t.add_row(*row)
        outer.add_row(t)
        outer.add_row("")

    panes = Table.grid(padding=(0, 2))
    panes.add_column(style="bold #56b6c2", no_wrap=True)
    panes.add_column(style="bold", no_wrap=True)
    panes.add_column()
    for row in PANES:
        panes.add_row(*row)
    outer.add_row(Text("Panes (keys, or click a tab)", style="bold underline"))
    outer.add_row(panes)
    outer.add_row("")
    section("Keys", KEYS)
    for title, rows in lab_key_sections():
        section(title, rows)
    section("Filter (Connections)", FILTER)
    outer.add_row(Text("State colours (the same everywhere)", style="bold underline"))
    legend = Text()
    for code in STATE_ORDER:
        if code in STATE_NAMES:
            legend.append_text(state_text(code, bold=True))
            legend.append("  ")
    outer.add_row(legend)
    outer.add_row("")
    outer.add_row(Text("Row marks: a new socket is highlighted for 3 s; a socket that is gone stays 2 s, dim and "
                       "struck through, before it leaves.", style="dim"))
    return outer


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 96; max-width: 100%; height: 90%; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "dismiss", "Close", show=True),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll() as vs:
            vs.border_title = "sockmon help — Esc to close"
            yield Static(help_renderable())
