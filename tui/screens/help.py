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
    ("1  c", "Connections", "every other TCP socket: state, ends, queues, receive / send rate, timer countdown, "
                            "rtt, cwnd, owner"),
    ("1  g", "Processes", "instead of Connections (g again, or c: back): connections per process, their states "
                          "and summed receive / send rates, busiest first (like nethogs); Enter: that process's connections"),
    ("2", "Keepalive", "sysctls, sockets with a keepalive timer, SO_KEEPALIVE of the selected socket"),
    ("3", "Client", "the built-in client: Target has the focus (type HOST:PORT, Enter connects, then type "
                    "lines to send: each gets its ending, CRLF by default), one-key options, shutdown/close/abort"),
    ("4", "Server", "the built-in server: start/stop, modes (m picks one), its clients sorted by peer, the accept "
                    "queue, send to one client or all, per-client actions"),
    ("5  t", "Timeline", "the life of the selected connection (or our client): calls, states, bytes"),
    ("6  h", "History", "the last 5,000 closed connections, newest first: owner, lifetime, bytes each way, how "
                        "each ended (FIN / RST); / filters, Enter shows one"),
    ("7", "Scenarios", "guided TCP scenarios (TIME_WAIT, CLOSE_WAIT, linger 0…): Enter runs one, each step "
                       "checked against the kernel, its rows highlighted in Connections; x stops it"),
    ("8  D", "Diagram", "TCP's state machine live: sockets per state now, transitions per second and since start on "
                        "each edge (the tracepoint), what causes each edge, the followed connection's path lit; / "
                        "filters (counts and edges of matching sockets)"),
]

KEYS = [
    ("↑ ↓ PgUp PgDn Home End", "move the cursor in a socket list"),
    ("← →", "scroll a wide table sideways, a column at a time (State and Local stay put)"),
    ("C", "columns of a socket list: reorder, show / hide (top = left, and on screen first when narrow); "
          "kept for the session and in $XDG_CONFIG_HOME/sockmon/columns.json"),
    ("Enter / double click", "Detail screen of the socket under the cursor"),
    ("o", "socket options: SO_LINGER / keepalive of the selected socket, read back from the kernel "
          "(another process's after confirmation, as root)"),
    ("k", "kill the socket under the cursor in Listening / Connections (SOCK_DESTROY, like ss -K): a "
          "confirmation names the owner and both ends first; the owner then gets ECONNABORTED, the peer a RST"),
    ("s / S / < >", "sort by the next column / reverse / previous, next column (or click a header)"),
    ("/", "filter the list in focus as you type: Connections, Listening, Keepalive timers (Enter or Esc: "
          "back to the table)"),
    ("g", "process view: connections and throughput per process, in the Connections pane's place"),
    ("Tab / Shift+Tab", "next / previous field or button; Esc leaves a field, Enter applies it"),
    ("Alt+1 … Alt+8", "switch panes from inside a text field too (there digits are text)"),
    ("p", "pause / resume collection (countdowns freeze with the snapshot; r still refreshes once)"),
    ("r", "refresh now"),
    ("N", "network namespace: show every namespace (a Netns column in Listening and Connections), ours, a "
          "named one or a process's (labelled by process and container); the status bar names it. The lab "
          "panes (Client, Server) stay in the namespace --netns gave"),
    ("u", "socket types in Listening / Connections: TCP → TCP+UDP (bound UDP beside the listeners) → UDP → "
          "UNIX → all"),
    ("n", "names / numbers: host names (looked up in the background: /etc/hosts, then maybe DNS) and "
          "service names (/etc/services), like ss -r"),
    ("+ / -", "slower / faster refresh (interval up / down)"),
    ("Ctrl+P", "command palette: every action by name"),
    ("F", "Fleet: every host's sockets, fullest listeners and rates, read from Prometheus "
          "(sockmon --prometheus URL; Esc back, r refresh)"),
    ("?", "this help"),
    ("q / Ctrl+Q", "quit"),
]

FILTER = [
    ("state established  exclude time-wait", "ss: states first (also the groups all, connected, synchronized, "
                                            "bucket, big)"),
    ("dport = :6379  sport >= :1024  sport lt :9000", "ss: ports with = != < <= > >= (eq ne lt le gt ge)"),
    ("src 127.0.0.0/8  dst [::1]  dst 10.0.0.1:22", "ss: address, network (CIDR), address:port, :port"),
    ("( a or b ) and not c   ! c   && ||", "ss: and / or (equal, from the left: a or b c = (a or b) and c), "
                                         "not, parentheses"),
    ("127.0.0.1:6379  [::1]:6379  *:22", "what the table shows: that endpoint on either side"),
    ("est  state:est,fin  established  connected", "states by name, prefix or group"),
    ("8080  :8080  port:6000-7000  sport:22,80", "local or peer port; sport: / dport: one side; ranges, lists"),
    ("proc:python  pid:1234  user:root  v4  v6", "owner process, address family"),
    ("-time_wait  !8080", "not; two terms side by side: and"),
    ("anything else", "substring of either address or the process name; bad text: the reason, old filter kept"),
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
    section("Filter (every socket list, sockmon ls FILTER; ss's language plus shorthand)", FILTER)
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
    outer.add_row(Text("Recv/s, Send/s: the change of the kernel's tcp_info bytes_received / bytes_acked since the "
                       "previous refresh, per second, in SI units (1 kB/s = 1000 B/s); blank until a connection "
                       "has been seen twice, and for sockets without tcp_info (TIME_WAIT).", style="dim"))
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
