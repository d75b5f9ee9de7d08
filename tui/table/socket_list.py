"""Shared base of the socket-list panes (Listening, Connections, keepalive timers): a VirtualTable of
kernel sockets, a filter line, counts per state, selection messages and a live timer countdown."""

from __future__ import annotations

import socket
import time
from collections import ChainMap, Counter
from collections.abc import Iterable

from rich.text import Text
from sockmon.core.errors import BadInput
from sockmon.core.records import SOCKET_COOKIE, SOCKET_IDENTITY, SOCKET_STATE, Process, Snapshot, Socket
from sockmon.core.states import ESTABLISHED
from sockmon.core.table.filter import parse_filter
from sockmon.tui import fmt
from sockmon.tui.messages import SocketActivated, SocketSelected
from sockmon.tui.theme import ERROR_STYLE, counts_text, state_style
from sockmon.tui.widgets.virtual_table import Column, VirtualTable
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, Static

# Identity of a socket row across snapshots, as one C-level call: the 6-tuple (family, src, sport,
# dst, dport, cookie) — the identity core/diff uses — or, with netlink where every socket has a unique
# cookie, the cookie alone (an int hashes much faster than a 6-tuple at 60k rows); /proc/net/tcp has
# no cookies. (Socket.key is the cookie when there is one, else the 6-tuple.)
socket_key = SOCKET_IDENTITY
cookie_key = SOCKET_COOKIE


def key_fn_for(snapshot: Snapshot):
    return cookie_key if snapshot.source == "netlink" else socket_key


def addr_key(family: int, host: str, port: int) -> tuple:
    try:
        return (family, socket.inet_pton(family, host), port)
    except (OSError, ValueError):
        return (family, host.encode(), port)


class SocketListPane(Vertical):
    """A titled socket list. Subclasses give ``columns()`` and ``select_rows(snapshot)``."""

    DEFAULT_CSS = """
    SocketListPane { border: round $primary 60%; height: 1fr; }
    SocketListPane:focus-within { border: round $accent; }
    SocketListPane > .pane-info { height: 1; padding: 0 1; }
    SocketListPane .filter-row { height: 1; }
    SocketListPane .filter-row Input { border: none; height: 1; padding: 0 1; width: 1fr; background: $boost; }
    SocketListPane .filter-row Input:focus { background: $accent 20%; }
    SocketListPane .filter-error { height: auto; max-height: 3; padding: 0 1; display: none; }
    SocketListPane .filter-error.-shown { display: block; }
    """

    TITLE = "Sockets"
    KEY_HINT = ""
    WITH_FILTER = True
    INITIAL_SORT: str | None = None

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", show=True),
        Binding("escape", "leave_filter", "Back to table", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        self._ready = False
        super().__init__(id=id, classes=classes)
        self.snapshot: Snapshot | None = None
        self.summary = None
        self._owners: ChainMap = ChainMap({})
        self.counts: Counter = Counter()
        self.filter_error: str | None = None
        self.table = VirtualTable(self.columns(), key_fn=socket_key, sort_column=self.INITIAL_SORT,
                                  empty_text=self.EMPTY_TEXT, id=f"{id or 'pane'}-table", clock=self.clock)

    EMPTY_TEXT = "no sockets"

    # ------------------------------------------------------------ subclass hooks
    def columns(self) -> list[Column]:  # pragma: no cover - abstract
        raise NotImplementedError

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:  # pragma: no cover - abstract
        raise NotImplementedError

    # A pane whose rows are ``wants(sock)`` of the snapshot takes its row marks from the core's diff
    # (added / removed / changed across ``wants``); None: marks from comparing key sets (a subset the
    # diff knows nothing about, e.g. sockets whose timer became a keepalive timer).
    wants = None

    def counts_from(self, summary, rows: list[Socket]) -> Counter:
        """Counts per state of this pane's rows (Listening / Connections read them from the Summary)."""
        return Counter(map(SOCKET_STATE, rows))

    def info_text(self) -> Text:
        return Text("")

    # ------------------------------------------------------------ composition
    def compose(self) -> ComposeResult:
        yield Static(id=f"{self.id}-info", classes="pane-info")
        if self.WITH_FILTER:
            with Horizontal(classes="filter-row"):
                yield Input(placeholder="/ filter: state port addr:… proc:… (e.g. established 8080)",
                            id=f"{self.id}-filter", select_on_focus=False)
            # its own line under the filter, wrapped: the reason is never cut off in a narrow terminal
            yield Static("", id=f"{self.id}-filter-error", classes="filter-error")
        yield self.table

    def on_mount(self) -> None:
        self._ready = True
        # Content, not markup: "[l]" would otherwise be read as a style tag and vanish
        self.border_title = Content(f"{self.TITLE} [{self.KEY_HINT}]" if self.KEY_HINT else self.TITLE)
        self.set_interval(0.5, self._tick)
        self._refresh_info()

    NARROW_WIDTHS: dict[str, int] = {}
    WIDE_WIDTHS: dict[str, int] = {}

    def on_resize(self) -> None:
        narrow = self.size.width < 110
        self.table.set_column_widths(self.NARROW_WIDTHS if narrow else self.WIDE_WIDTHS)

    def _tick(self) -> None:
        # live countdowns: only the visible rows are re-formatted
        if self.snapshot is not None and self.table.row_count:
            self.table.refresh()

    # ------------------------------------------------------------ data in
    def clock(self) -> float:
        """The app's view clock, for countdowns and row marks: frozen while paused (and in snapshot tests)."""
        try:
            app = self.app
        except Exception:  # noqa: BLE001 - not mounted yet
            return time.monotonic()
        view = getattr(app, "view_clock", None) or getattr(app, "clock", time.monotonic)
        return view()

    def elapsed_ms(self) -> float:
        if self.snapshot is None:
            return 0.0
        return max(0.0, (self.clock() - self.snapshot.taken_at) * 1000.0)

    def owner_of(self, sock: Socket) -> Process | None:
        return self._owners.get(sock.inode) if sock.inode else None

    def show_snapshot(self, snapshot: Snapshot, summary=None, diff=None) -> None:
        """Show ``snapshot``; ``diff`` is the core's SnapshotDiff from the previous one shown (row marks)."""
        prev = self.snapshot
        self.snapshot = snapshot
        self.summary = summary
        # vanishing rows keep their owner for the fade: current owners first, then the previous ones
        prev_owners = getattr(prev, "owners", None)
        self._owners = ChainMap(snapshot.owners, prev_owners) if prev_owners else ChainMap(snapshot.owners)
        self.table.set_key_fn(key_fn_for(snapshot))
        rows = list(self.select_rows(snapshot))
        self.counts = self.counts_from(summary, rows)
        wants = self.wants
        if diff is not None and wants is not None:
            added = [s for s in diff.added if wants(s)]
            removed = [s for s in diff.removed if wants(s)]
            for old, new in diff.changed:  # a socket that moved in or out of this pane (e.g. → LISTEN)
                if wants(new) and not wants(old):
                    added.append(new)
                elif wants(old) and not wants(new):
                    removed.append(old)
            self.table.set_rows(rows, added=added, removed=removed)
        else:
            self.table.set_rows(rows)
        self._refresh_info()

    def highlight_four_tuples(self, four_tuples) -> None:
        """Draw the rows of these (src, sport, dst, dport) highlighted (a lab scenario's); empty: none."""
        wanted = frozenset(tuple(ft) for ft in four_tuples)
        self.table.highlight = (lambda s: (s.src, s.sport, s.dst, s.dport) in wanted) if wanted else None
        self.table.refresh()

    # ------------------------------------------------------------ filter
    def on_input_changed(self, event: Input.Changed) -> None:
        if not self.WITH_FILTER or event.input.id != f"{self.id}-filter":
            return
        event.stop()
        self.apply_filter(event.value)

    def apply_filter(self, text: str) -> bool:
        """Apply the filter text; bad text keeps the previous filter and says why (text is kept)."""
        err = self.query_one(f"#{self.id}-filter-error", Static)
        try:
            pred = parse_filter(text, self.owner_of)
        except BadInput as exc:
            # Keep the typed text, say why, and show everything rather than a stale filter.
            self.filter_error = str(exc)
            err.update(fmt.safe_text(f"✗ {exc} — not filtering", style=ERROR_STYLE))
            err.add_class("-shown")
            self.table.set_filter(None)
            self._refresh_info()
            return False
        self.filter_error = None
        err.update("")
        err.remove_class("-shown")
        self.table.set_filter(pred)
        self._refresh_info()
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def action_focus_filter(self) -> None:
        if self.WITH_FILTER:
            self.query_one(f"#{self.id}-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.table.focus()

    # ------------------------------------------------------------ selection out
    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        event.stop()
        self.post_message(SocketSelected(event.row, origin=self.id or "", by_user=event.by_user))

    def on_virtual_table_row_activated(self, event: VirtualTable.RowActivated) -> None:
        event.stop()
        self.post_message(SocketActivated(event.row, origin=self.id or ""))

    @property
    def selected(self) -> Socket | None:
        return self.table.cursor_row

    def focus_table(self) -> None:
        self.table.focus()

    def _refresh_info(self) -> None:
        if not self._ready:
            return
        self.query_one(f"#{self.id}-info", Static).update(self.info_text())

    # ------------------------------------------------------------ common columns
    def state_column(self, width: int = 11) -> Column:
        # kernel state codes are already in life order: ESTABLISHED 1, SYN_SENT 2 … TIME_WAIT 6 … LISTEN 10
        return Column("state", "State", width, get=SOCKET_STATE,
                      fmt=lambda s: s.state_name, style=lambda s: state_style(s.state), comparable=True)

    def local_column(self, width: int = 22) -> Column:
        return Column("local", "Local", width, get=lambda s: addr_key(s.family, s.src, s.sport),
                      fmt=fmt.local_of, overflow="start", comparable=True)

    def peer_column(self, width: int = 22) -> Column:
        return Column("peer", "Peer", width, get=lambda s: addr_key(s.family, s.dst, s.dport),
                      fmt=fmt.peer_of, overflow="start", comparable=True)

    def owner_column(self, width: int = 22) -> Column:
        def get(s: Socket):
            p = self.owner_of(s)
            return None if p is None else (p.name, p.pid)

        def text(s: Socket):
            p = self.owner_of(s)
            if p is not None:
                return fmt.owner_text(p)
            if not s.inode:
                # no fd: nobody owns it (TIME_WAIT, orphans) — or it still waits in a listener's accept queue
                return Text("(not accepted yet)" if s.state == ESTABLISHED else "", style="dim italic")
            return ""

        return Column("owner", "Process", width, get=get, fmt=text)

    def user_column(self, width: int = 9) -> Column:
        def user(s: Socket) -> str:
            return fmt.socket_user(s, self.owner_of(s))

        return Column("user", "User", width, get=user)

    def counts_line(self, prefix: str = "") -> Text:
        out = Text(prefix)
        out.append_text(counts_text(dict(self.counts)))
        if self.table.filtered:
            out.append(f"   showing {self.table.live_row_count} of {self.table.total_count}", style="bold")
        return out
