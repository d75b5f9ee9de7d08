"""Keepalive pane: the system's keepalive sysctls, every socket with a running keepalive timer, and for
the selected socket whether SO_KEEPALIVE is on, its idle / interval / count read from the kernel, the
running timer and when the kernel would give up on a silent peer (idle + intvl × cnt after the last
segment received, with the time left).

The selected socket's options are re-read at every refresh (off the UI thread, one read at a time, the
newest wins: ``tui/widgets/options_reader.py``), so a change made by anyone — sockmon, or the process that
owns the socket — shows within one refresh."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress
from operator import attrgetter

from rich.table import Table
from rich.text import Text
from sockmon.core.records import Process, Snapshot, Socket
from sockmon.core.states import LISTEN, TIMER_KEEPALIVE
from sockmon.tui import fmt
from sockmon.tui.table.socket_list import SocketListPane
from sockmon.tui.theme import state_text
from sockmon.tui.widgets.options_reader import OptionsReader
from sockmon.tui.widgets.quiet import quiet_update
from sockmon.tui.widgets.virtual_table import Column
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

_TIMER = attrgetter("timer")

class KeepaliveTimersPane(SocketListPane):
    """Sockets whose keepalive timer is running now."""

    TITLE = "Keepalive timers"
    INITIAL_SORT = "timer"
    FILTER_ALWAYS_SHOWN = False
    EMPTY_TEXT = "no socket has a keepalive timer running (SO_KEEPALIVE is off by default)"

    def columns(self) -> list[Column]:
        return [
            self.state_column(11),
            self.local_column(),
            self.peer_column(),
            self.owner_column(),
            Column("timer", "Next probe", 19, get=lambda s: s.timer.expires_ms, comparable=True, priority=30,
                   fmt=lambda s: fmt.timer_text(s.timer, self.elapsed_ms()),
                   help="time left on the keepalive timer, rN: probes sent unanswered"),
            Column("probes", "Probes", 7, get=lambda s: s.timer.retrans if s.timer else 0, justify="right",
                   priority=40, help="keepalive probes sent and not answered"),
            self.family_column(priority=90),
        ]

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:
        socks = snapshot.sockets  # the sockets with a timer found in C; Python only for those
        return [s for s in compress(socks, map(_TIMER, socks)) if s.timer.kind == TIMER_KEEPALIVE]

    def info_text(self) -> Text:
        n = self.table.total_count
        out = Text(f"{n} socket{'s' if n != 1 else ''} with a keepalive timer running", style="bold")
        if self.table.filtered:
            out.append(f"   showing {self.table.live_row_count} of {n}", style="bold")
        return out


class KeepalivePane(Horizontal):
    DEFAULT_CSS = """
    KeepalivePane { height: 1fr; }
    KeepalivePane #ka-left { width: 1fr; min-width: 30; }
    KeepalivePane #ka-side { width: 45%; min-width: 44; height: 1fr; overflow-y: auto; }
    KeepalivePane #ka-system { border: round $primary 60%; height: auto; padding: 0 1; }
    KeepalivePane #ka-selected { border: round $primary 60%; height: auto; padding: 0 1; }
    KeepalivePane.-narrow { layout: vertical; }
    KeepalivePane.-narrow #ka-left { width: 1fr; height: 1fr; min-height: 8; }
    KeepalivePane.-narrow #ka-side { width: 1fr; height: auto; max-height: 60%; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        self._ready = False
        super().__init__(id=id)
        self.timers = KeepaliveTimersPane(id="ka-timers")
        self.socket: Socket | None = None
        self.owner: Process | None = None
        self.summary = None
        self._pending: tuple | None = None  # (snapshot, summary) for the timer list while the tab is hidden
        self.keepalive = None  # Keepalive read from the kernel for self.socket (at the latest refresh)
        self.options = None  # every option read with it (SocketOptions), when the reader gives them
        self.read_note = ""
        self.reader = None  # seam: tests inject a deterministic reader (sock, owner) -> (options, note)
        self._reads: OptionsReader | None = None
        self.lookup = None  # sock -> its record in the newest snapshot (set by the app), or None
        self.origin = ""  # the list the shown socket was selected in
        self.pinned = False  # the user picked it (a key or click), not a refresh moving a cursor

    def compose(self) -> ComposeResult:
        from textual.containers import Vertical

        with Vertical(id="ka-left"):
            yield self.timers
        with Vertical(id="ka-side"):
            yield Static(id="ka-system")
            yield Static(id="ka-selected")

    def on_mount(self) -> None:
        self._ready = True
        self._reads = OptionsReader(self.app, self._read_done)
        self.query_one("#ka-system", Static).border_title = "System defaults (sysctl)"
        self.query_one("#ka-selected", Static).border_title = "Selected socket"
        self.set_interval(0.5, self._tick_selected)
        self._redraw()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 110, "-narrow")

    def focus_table(self) -> None:
        self.timers.focus_table()

    # ------------------------------------------------------------------ data in
    def show_snapshot(self, snapshot: Snapshot, summary=None) -> None:
        self.summary = summary
        if not self.region.area and self.timers.snapshot is not None:
            # on another tab: the timer list catches up when shown (on_show), not each refresh
            self._pending = (snapshot, summary)
        else:
            self._pending = None
            self.timers.show_snapshot(snapshot, summary)
        if self.socket is not None:
            fresh = self.lookup(self.socket) if self.lookup is not None else None
            if fresh is not None:
                self.socket = fresh
        if not self.region.area:  # on another tab: read and drawn when shown (on_show), not each refresh
            return
        if self.socket is not None and self.socket.state != LISTEN:
            self._read(self.socket, self.owner)  # every refresh: a change by anyone shows at once
        self._redraw()

    def on_show(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.timers.show_snapshot(*pending)
        if self.socket is not None and self.socket.state != LISTEN:
            self._read(self.socket, self.owner)
        self._redraw()

    TIMERS = "ka-timers"
    ORIGIN_NAMES = {"ka-timers": "keepalive timers", "connections": "Connections", "listening": "Listening"}

    def wants_selection(self, origin: str, by_user: bool) -> bool:
        """Whether a cursor move in ``origin`` should replace the socket shown here. A user's pick always
        does; a refresh moving some list's cursor never replaces a pick, and never the timer list's row."""
        if by_user or self.socket is None:
            return True
        if self.pinned:
            return origin == self.origin
        return origin == self.TIMERS or self.origin != self.TIMERS

    def show_cursor_row(self) -> None:
        """Entering the pane: unless the user picked a socket elsewhere, show the timer list's cursor row."""
        row = self.timers.selected
        if row is not None and (not self.pinned or self.origin == self.TIMERS):
            self.show_socket(row, self.timers.owner_of(row), origin=self.TIMERS, by_user=self.pinned)

    def show_socket(self, sock: Socket | None, owner: Process | None = None, *, origin: str = "",
                    by_user: bool = False) -> None:
        """The selection changed (in any socket list): read its keepalive options off the UI thread."""
        same = (sock is not None and self.socket is not None and sock.key == self.socket.key)
        self.socket, self.owner = sock, owner
        self.origin, self.pinned = origin, by_user or (self.pinned and same)
        if self._ready:
            where = self.ORIGIN_NAMES.get(origin)
            self.query_one("#ka-selected", Static).border_title = (
                f"Selected socket (in {where})" if where else "Selected socket")
        if not same:
            self.keepalive, self.read_note = None, "reading…" if sock is not None else ""
            if sock is not None and sock.state != LISTEN:
                self._read(sock, owner)
            elif sock is not None:
                self.read_note = "a listener: keepalive applies to the connections it accepts"
        self._redraw()

    def _read(self, sock: Socket, owner: Process | None) -> None:
        if self._reads is None:
            return
        self._reads.reader = self.reader
        self._reads.request(sock, owner)

    def _read_done(self, sock: Socket, result, note: str, seq: int = 0) -> None:
        if self.socket is None or sock.key != self.socket.key:
            return
        if self._reads is not None and seq and seq < self._reads.seq and self.keepalive is not None:
            return  # a newer read is under way: keep what is shown until it lands
        ka = getattr(result, "keepalive", result)  # SocketOptions, or a bare Keepalive from a test reader
        self.options = result if hasattr(result, "keepalive") else None
        self.keepalive, self.read_note = ka, note
        self._redraw()

    # ------------------------------------------------------------------ drawing
    def _system(self):
        s = self.summary
        idle = getattr(s, "keepalive_time", None)
        intvl = getattr(s, "keepalive_intvl", None)
        cnt = getattr(s, "keepalive_probes", None)
        if idle is None:
            try:
                from sockmon.core.lab.options import system_keepalive

                k = system_keepalive()
                idle, intvl, cnt = k.idle, k.intvl, k.cnt
            except Exception:  # noqa: BLE001
                pass
        return idle, intvl, cnt

    def _redraw(self) -> None:
        if not self._ready:
            return
        idle, intvl, cnt = self._system()
        t = Table.grid(padding=(0, 1))
        t.add_column(style="dim")
        t.add_column()
        t.add_row("tcp_keepalive_time", f"{idle} s  idle before the first probe" if idle is not None else "?")
        t.add_row("tcp_keepalive_intvl", f"{intvl} s  between probes" if intvl is not None else "?")
        t.add_row("tcp_keepalive_probes", f"{cnt}  unanswered probes → dead" if cnt is not None else "?")
        if None not in (idle, intvl, cnt):
            t.add_row("dead peer after", Text(f"{idle + intvl * cnt} s  (= {idle} + {intvl} × {cnt})", style="bold"))
        t.add_row("", Text("applies only to sockets with SO_KEEPALIVE on", style="italic dim"))
        quiet_update(self.query_one("#ka-system", Static), t, key=(idle, intvl, cnt))
        self._render_selected()

    @staticmethod
    def _dead_peer_text(ka, ut: int, sock: Socket, timer, elapsed_ms: float) -> Text:
        """What the kernel will do if the peer went silent now: the formula and the time left."""
        from sockmon.core.lab.options import dead_peer

        info = sock.tcp_info
        since = None
        if info is not None:  # the keepalive idle clock runs from the last segment received (data or ACK)
            since = min(info.last_data_recv, info.last_ack_recv) + elapsed_ms
        ka_timer = timer if timer is not None and timer.kind == TIMER_KEEPALIVE else None
        dp = dead_peer(ka, since_recv_ms=since, user_timeout_ms=ut,
                       probes_out=ka_timer.retrans if ka_timer else 0,
                       timer_remaining_ms=fmt.timer_remaining_ms(ka_timer, elapsed_ms) if ka_timer else None,
                       unacked=info.unacked if info is not None else 0)
        if dp.at_s is None:
            return Text(f"never noticed by keepalive ({dp.note})", style="italic")
        out = Text()
        out.append(f"ETIMEDOUT {dp.at_s:.0f} s after the last segment received", style="bold")
        out.append(f"\n= {dp.formula}", style="dim")
        if dp.remaining_s is not None and since is not None:
            out.append(f"\nlast received {since / 1000:.1f} s ago → in ≈ {dp.remaining_s:.0f} s if silent from now",
                       style="bold")
        if dp.note:
            out.append(f"\n{dp.note}", style="italic #e5c07b")
        return out

    def _tick_selected(self) -> None:
        # the countdowns, while the pane is on screen: each redraw of the box is a layout of the screen
        if self.region.area:
            self._render_selected()

    def _render_selected(self) -> None:
        if not self._ready:
            return
        box = self.query_one("#ka-selected", Static)
        sock = self.socket
        if sock is None:
            quiet_update(box, Text("Select a socket in Connections, Listening or the timer list.", style="dim italic"))
            return
        t = Table.grid(padding=(0, 1))
        t.add_column(style="dim")
        t.add_column()
        t.add_row("socket", Text(f"{fmt.local_of(sock)} → {fmt.peer_of(sock)}"))
        t.add_row("state", state_text(sock.state, bold=True))
        t.add_row("owner", fmt.safe_text(fmt.owner_text(self.owner) or "—"))
        ka = self.keepalive
        timer = sock.timer
        elapsed = self.timers.elapsed_ms()
        if ka is not None:
            t.add_row("SO_KEEPALIVE", Text("on", style="bold #4ec94e") if ka.enabled else Text("off", style="bold #e5c07b"))
            t.add_row("TCP_KEEPIDLE", f"{ka.idle} s")
            t.add_row("TCP_KEEPINTVL", f"{ka.intvl} s")
            t.add_row("TCP_KEEPCNT", str(ka.cnt))
            ut = self.options.user_timeout_ms if self.options is not None else 0
            if ut:
                t.add_row("TCP_USER_TIMEOUT", f"{ut} ms")
            t.add_row("dead peer", self._dead_peer_text(ka, ut, sock, timer, elapsed))
        t.add_row("read", fmt.safe_text(self.read_note or "—", style="dim"))
        if timer is not None and timer.kind == TIMER_KEEPALIVE:
            remaining = fmt.timer_remaining_ms(timer, elapsed) or 0.0
            t.add_row("keepalive timer", Text(f"next firing in {fmt.duration(remaining)}, {timer.retrans} probe(s) "
                                              "unanswered", style="#56b6c2"))
        elif timer is not None and timer.kind:
            t.add_row("timer", fmt.timer_text(timer, elapsed))
        else:
            t.add_row("timer", Text("none running", style="dim"))
        box.update(t)
        box._quiet_last = None  # shown without quiet_update: the next quiet one is never skipped
