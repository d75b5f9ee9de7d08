"""Shared base of the socket-list panes (Listening, Connections, keepalive timers): a VirtualTable of
kernel sockets, a filter line, counts per state, selection messages and a live timer countdown."""

from __future__ import annotations

import socket
import time
from collections import ChainMap, Counter
from collections.abc import Iterable
from itertools import compress

from rich.text import Text
from sockmon.core.netns import ALL_NETNS
from sockmon.core.records import SOCKET_COOKIE, SOCKET_ROW_IDENTITY, SOCKET_STATE, Process, Snapshot, Socket
from sockmon.core.states import CLOSE, ESTABLISHED, LISTEN
from sockmon.tui import fmt
from sockmon.tui.messages import ColumnsRequested, KillRequested, SocketActivated, SocketSelected
from sockmon.tui.theme import STATE_SS_NAMES, STATE_TINY_NAMES, counts_text, state_style
from sockmon.tui.widgets.filter_line import read_filter_line
from sockmon.tui.widgets.quiet import quiet_update
from sockmon.tui.widgets.virtual_table import Column, VirtualTable
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, Static

# Identity of a socket row across snapshots, as one C-level call: the protocol, the 6-tuple
# (family, src, sport, dst, dport, cookie) and the namespace — the identity core/diff uses, plus the protocol
# so a UDP and a TCP socket with the same 4-tuple are two rows — or, with netlink where every socket (TCP, UDP,
# UNIX) has a unique cookie, the cookie alone (an int hashes much faster than a tuple at 60k rows);
# /proc/net/tcp has no cookies. (Socket.key is the cookie when there is one, else the tuple.)
socket_key = SOCKET_ROW_IDENTITY
cookie_key = SOCKET_COOKIE

TCP_ONLY = frozenset({"tcp"})
# the socket-type toggle of the lists (the app's `u` key cycles through these)
SOCKET_TYPE_MODES: tuple[frozenset[str], ...] = (
    TCP_ONLY, frozenset({"tcp", "udp"}), frozenset({"udp"}), frozenset({"unix"}), frozenset({"tcp", "udp", "unix"}),
)


def socket_types_label(types: frozenset[str]) -> str:
    if types == frozenset({"tcp", "udp", "unix"}):
        return "TCP+UDP+UNIX"
    return "+".join(t.upper() for t in ("tcp", "udp", "unix") if t in types)


def row_protocol(s) -> str:
    """"tcp", "udp" or the UNIX socket type as ss names it (u_str, u_dgr, u_seq)."""
    return s.type_name if s.family == socket.AF_UNIX else s.protocol_name


# ``k`` on a row: kill that socket (the app confirms first). In the BINDINGS of the panes that offer it.
KILL_BINDING = Binding("k", "kill_socket", "Kill", show=True,
                       tooltip="Kill the selected socket (SOCK_DESTROY, like ss -K), after confirmation")


def key_fn_for(snapshot: Snapshot):
    return cookie_key if snapshot.source == "netlink" else socket_key


def addr_key(family: int, host: str, port: int) -> tuple:
    try:
        return (family, socket.inet_pton(family, host), port)
    except (OSError, ValueError):
        return (family, host.encode("utf-8", "surrogateescape"), port)  # UNIX rows: the path


class SocketListPane(Vertical):
    """A titled socket list. Subclasses give ``columns()`` and ``select_rows(snapshot)``."""

    DEFAULT_CSS = """
    SocketListPane { border: round $primary 60%; height: 1fr; }
    SocketListPane:focus-within { border: round $accent; }
    SocketListPane > .pane-info { height: 1; padding: 0 1; }
    SocketListPane .filter-row { height: 1; }
    SocketListPane .filter-row.-collapsed { display: none; }
    SocketListPane .filter-row Input { border: none; height: 1; padding: 0 1; width: 1fr; background: $boost; }
    SocketListPane .filter-row Input:focus { background: $accent 20%; }
    SocketListPane .filter-error { height: auto; max-height: 3; padding: 0 1; display: none; }
    SocketListPane .filter-error.-shown { display: block; }
    """

    TITLE = "Sockets"
    KEY_HINT = ""
    WITH_FILTER = True
    # False: the filter line takes no row while it is empty and unfocused (``/`` shows it): small lists
    # such as Listening keep their rows in a short terminal
    FILTER_ALWAYS_SHOWN = True
    INITIAL_SORT: str | None = None

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", show=True),
        Binding("escape", "leave_filter", "Back to table", show=False),
        Binding("C", "choose_columns", "Columns", show=False,
                tooltip="Columns: choose, reorder, show / hide this list's columns"),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        self._ready = False
        super().__init__(id=id, classes=classes)
        self.snapshot: Snapshot | None = None
        self.summary = None
        self._owners: ChainMap = ChainMap({})
        self.counts: Counter = Counter()
        self.filter_error: str | None = None
        self.all_netns = False  # the every-namespace view: the Netns column is shown
        self.table = VirtualTable(self.shown_columns(), key_fn=socket_key, sort_column=self.INITIAL_SORT,
                                  empty_text=self.EMPTY_TEXT, id=f"{id or 'pane'}-table", clock=self.clock)

    EMPTY_TEXT = "no sockets"
    # which socket types the list shows (the app's toggle sets it); the snapshot holds UDP / UNIX
    # sockets only while some list asks the collector for them
    socket_types: frozenset[str] = TCP_ONLY
    names = None  # sockmon.core.names.Names while host / service names are on (the app's `n` key)

    # ------------------------------------------------------------ subclass hooks
    def columns(self) -> list[Column]:  # pragma: no cover - abstract
        raise NotImplementedError

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:  # pragma: no cover - abstract
        raise NotImplementedError

    def shown_columns(self) -> list[Column]:
        """``columns()``, without the Netns column unless every namespace is shown."""
        return [c for c in self.columns() if c.key != "netns" or self.all_netns]

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
            with Horizontal(classes="filter-row" if self.FILTER_ALWAYS_SHOWN else "filter-row -collapsed"):
                yield Input(placeholder="/ filter: ss syntax (state established dport = :443) or shorthand "
                            "(127.0.0.1:6379, est, proc:nginx); ? help",
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

    def on_resize(self) -> None:
        self.call_after_refresh(self._refresh_subtitle)
        self._refresh_info()

    def _refresh_subtitle(self) -> None:
        """The border says the socket types and names shown (when not TCP / numbers), and when columns
        are off screen, how to reach or choose them."""
        parts = [] if self.socket_types == TCP_ONLY else [socket_types_label(self.socket_types)]
        if self.names is not None:
            parts.append("names")
        off = len(self.table.off_screen_keys) if self._ready else 0
        if off:
            parts.append(f"→ {off} more column{'s' if off != 1 else ''} · C: columns")
        self.border_subtitle = Content(" · ".join(parts))

    def set_column_choice(self, choice) -> None:
        """The user's column order / visibility for this list (the app keeps it for the session)."""
        self.table.set_choice(choice)
        self._refresh_subtitle()

    def action_choose_columns(self) -> None:
        self.post_message(ColumnsRequested(self.table, origin=self.id or ""))

    def _tick(self) -> None:
        # live countdowns: only the visible rows are re-formatted, and only when one of them has a
        # timer running (each repaint of a table costs as much as a refresh of its data)
        if self.snapshot is not None and self.table.row_count:
            if any(s is not None and s.timer is not None and s.timer.kind for s in self.table.on_screen_rows()):
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
        if prev is not None and prev.netns != snapshot.netns:  # another namespace: a new table, no marks
            self.table.rows.reload()
        all_netns = snapshot.netns == ALL_NETNS
        if all_netns != self.all_netns:
            self.all_netns = all_netns
            self.table.set_columns(self.shown_columns())
            self.on_resize()  # the layout and the border's column count again
        self.table.set_key_fn(key_fn_for(snapshot))
        rows = list(self.select_rows(snapshot))
        self.counts = self.counts_from(summary, rows)
        wants = self.wants
        # the core's diff is about TCP sockets only: with UDP / UNIX rows the key sets give the marks
        if diff is not None and wants is not None and self.socket_types == TCP_ONLY:
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
        """Apply the filter text (``sockmon.core.table.filter``: parsed once per text, the predicate runs per
        row); bad text keeps the previous filter and says why in one line (the typed text is kept)."""
        ok, pred, self.filter_error = read_filter_line(text, self.owner_of,
                                                       self.query_one(f"#{self.id}-filter-error", Static))
        if ok:
            self.table.set_filter(pred)
        self._refresh_info()
        return ok

    def set_filter_text(self, text: str) -> None:
        """Put ``text`` in the filter line (and apply it), as if typed."""
        if self.WITH_FILTER:
            self.query_one(f"#{self.id}-filter", Input).value = text
            self.apply_filter(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def action_focus_filter(self) -> None:
        if self.WITH_FILTER:
            self.query_one(".filter-row").remove_class("-collapsed")
            self.query_one(f"#{self.id}-filter", Input).focus()

    def on_descendant_blur(self, event) -> None:
        if self.WITH_FILTER and not self.FILTER_ALWAYS_SHOWN and getattr(event.widget, "id", None) == f"{self.id}-filter":
            self.query_one(".filter-row").set_class(not event.widget.value, "-collapsed")

    def action_leave_filter(self) -> None:
        self.table.focus()

    # ------------------------------------------------------------ selection out
    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        event.stop()
        self.post_message(SocketSelected(event.row, origin=self.id or "", by_user=event.by_user))

    def on_virtual_table_row_activated(self, event: VirtualTable.RowActivated) -> None:
        event.stop()
        self.post_message(SocketActivated(event.row, origin=self.id or ""))

    def action_kill_socket(self) -> None:
        """``k``: ask the app to kill the socket under the cursor (it confirms, then runs it off the UI thread)."""
        row = self.table.cursor_row
        netns = self.snapshot.netns if self.snapshot is not None else None
        if netns == ALL_NETNS:  # every namespace on screen: the row's own
            netns = getattr(row, "netns", None)
        self.post_message(KillRequested(row, origin=self.id or "", netns=netns))

    @property
    def selected(self) -> Socket | None:
        return self.table.cursor_row

    def focus_table(self) -> None:
        self.table.focus()

    def _refresh_info(self) -> None:
        if not self._ready:
            return
        quiet_update(self.query_one(f"#{self.id}-info", Static), self.info_text())

    # ------------------------------------------------------------ common columns
    def connected_rows(self, snapshot: Snapshot) -> list:
        """Every socket but listeners, of the types shown: TCP (not LISTEN), connected UDP sockets
        (unconnected ones are in Listening), UNIX sockets other than listeners."""
        types = self.socket_types
        socks = snapshot.sockets  # selected in C (60k sockets each refresh): no Python call per socket
        rows = list(compress(socks, map(LISTEN.__ne__, map(SOCKET_STATE, socks)))) if "tcp" in types else []
        if "udp" in types:
            rows += [s for s in snapshot.udp if s.state != CLOSE]
        if "unix" in types:
            rows += [u for u in snapshot.unix if u.state != LISTEN]
        return rows

    # ------------------------------------------------------------ socket types and names
    def set_socket_types(self, types: frozenset[str]) -> None:
        """Show these socket types ("tcp", "udp", "unix") from now on (re-selects the rows shown)."""
        self.socket_types = frozenset(types)
        self._refresh_subtitle()
        if self.snapshot is not None:
            self.show_snapshot(self.snapshot, self.summary)

    def set_names(self, names) -> None:
        """Host and service names (a `sockmon.core.names.Names`) or numbers (None) in Local / Peer."""
        self.names = names
        self._refresh_subtitle()
        self.table.refresh()


    def local_text(self, s) -> str:
        names = self.names
        if names is None or s.family == socket.AF_UNIX:
            return fmt.local_of(s)
        return names.endpoint(s.src, s.sport, s.protocol_name)

    def peer_text(self, s) -> str:
        names = self.names
        if names is None or s.family == socket.AF_UNIX or (s.dport == 0 and s.dst in ("0.0.0.0", "::")):
            return fmt.peer_of(s)
        return names.endpoint(s.dst, s.dport, s.protocol_name)

    # Column priorities (tui/widgets/columns.py): smaller is further left and on screen first; the key
    # columns (State + Local, frozen) and the two after them stay on screen at any width.
    def state_column(self, width: int = 11) -> Column:
        # kernel state codes are already in life order: ESTABLISHED 1, SYN_SENT 2 … TIME_WAIT 6 … LISTEN 10
        def text(s) -> str:
            if s.protocol == 6:  # IPPROTO_TCP (UNIX rows have protocol 0)
                return s.state_name
            return f"{row_protocol(s)} {fmt.short_state(s.state_name)}"  # e.g. "udp UNCONN", "u_str LISTEN"

        return Column("state", "State", width, get=SOCKET_STATE,
                      fmt=text, style=lambda s: state_style(s.state), comparable=True,
                      priority=0, frozen=True, help="state (sorted in the order of a connection's life)")

    def local_column(self, width: int = 21, *, max_width: int = 30, priority: int = 1) -> Column:
        # 21 = 255.255.255.255:65535 (a full [v6]:port is 47: ellipsized in the middle, never the port)
        return Column("local", "Local", width, get=lambda s: addr_key(s.family, s.src, s.sport),
                      fmt=self.local_text, overflow="endpoint", comparable=True, priority=priority, frozen=True,
                      min_width=13, max_width=max_width, help="local address:port")

    def peer_column(self, width: int = 21, *, priority: int = 10) -> Column:
        return Column("peer", "Peer", width, get=lambda s: addr_key(s.family, s.dst, s.dport),
                      fmt=self.peer_text, overflow="endpoint", comparable=True, priority=priority,
                      min_width=13, max_width=30, help="peer address:port (* for a listener)")

    def family_column(self, *, priority: int = 60) -> Column:
        return Column("family", "Fam", 3, get=lambda s: s.family, fmt=fmt.family_word, comparable=True,
                      priority=priority, help="address family: v4 / v6 (the filter's words)")

    def owner_column(self, width: int = 21, *, priority: int = 20) -> Column:
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

        return Column("owner", "Process", width, get=get, fmt=text, priority=priority, min_width=10,
                      max_width=28, help="owning process pid/name (none for TIME_WAIT and orphans)")

    def netns_column(self, width: int = 12, *, priority: int = 2) -> Column:
        """The socket's namespace (NAME or pid:N); in `shown_columns` only in the every-namespace view,
        right after the frozen key columns (priority 2), so it stays on screen at 80 columns."""
        # the tail stays visible when cut: generated names (netns-…-0, cni-…) differ at the end
        return Column("netns", "Netns", width, get=lambda s: s.netns or "", fmt=lambda s: fmt.safe_text(s.netns or ""),
                      overflow="start", comparable=True, priority=priority,
                      help="the socket's network namespace (every-namespace view only)")

    def user_column(self, width: int = 9, *, priority: int = 80) -> Column:
        def user(s: Socket) -> str:
            return fmt.socket_user(s, self.owner_of(s))

        return Column("user", "User", width, get=user, priority=priority,
                      help="the owner's user (none for TIME_WAIT and orphans)")

    def counts_line(self, prefix: str = "") -> Text:
        """Counts per state; on a narrow pane with ss's shorter names, then the shortest ones."""
        room = max(0, self.size.width - 4)  # inside the border and the line's padding
        out = Text("")
        for names in (None, STATE_SS_NAMES, STATE_TINY_NAMES):
            out = Text(prefix)
            out.append_text(counts_text(dict(self.counts), names=names, sep="  " if names is None else " "))
            if self.table.filtered:
                out.append(f"   showing {self.table.live_row_count} of {self.table.total_count}", style="bold")
            if not room or out.cell_len <= room:
                break
        return out
