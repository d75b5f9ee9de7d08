"""Keepalive pane: the system's keepalive sysctls, every socket with a running keepalive timer, and for
the selected socket whether SO_KEEPALIVE is on, its idle / interval / count read from the kernel, the
running timer and when a dead peer would be detected (idle + intvl × cnt)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from sockmon.core.errors import SockmonError
from sockmon.core.records import Process, Snapshot, Socket
from sockmon.core.states import LISTEN, TIME_WAIT, TIMER_KEEPALIVE
from sockmon.tui import fmt
from sockmon.tui.table.socket_list import SocketListPane
from sockmon.tui.theme import state_text
from sockmon.tui.widgets.virtual_table import Column
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static


def read_socket_keepalive(sock: Socket, owner: Process | None):
    """(Keepalive | None, how it was read or why not). Blocking (/proc scan, syscalls): call off the UI."""
    from sockmon.core.lab.foreign import borrowed_socket
    from sockmon.core.lab.options import read_keepalive

    if sock.state == TIME_WAIT or not sock.inode:
        return None, "no file descriptor (TIME_WAIT or orphaned): nothing to read options from"
    if owner is None:
        if os.geteuid() == 0:
            return None, "no owning process found (it may have exited, or the socket waits in an accept queue)"
        return None, "owner unknown (another user's process needs root to see)"
    own = owner.pid == os.getpid()
    try:
        with borrowed_socket(owner.pid, sock.inode) as dup:
            ka = read_keepalive(dup)
    except SockmonError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, str(SockmonError.from_os_error(exc, f"pidfd_getfd(pid {owner.pid})"))
    return ka, ("read with getsockopt from our own fd (a dup of it)" if own
                else f"read via pidfd_getfd from pid {owner.pid} (root)")


class KeepaliveTimersPane(SocketListPane):
    """Sockets whose keepalive timer is running now."""

    TITLE = "Keepalive timers"
    WITH_FILTER = False
    NARROW_WIDTHS = {"local": 17, "peer": 17, "timer": 17}
    WIDE_WIDTHS = {"local": 22, "peer": 22, "timer": 17}
    INITIAL_SORT = "timer"
    EMPTY_TEXT = "no socket has a keepalive timer running (SO_KEEPALIVE is off by default)"

    def columns(self) -> list[Column]:
        return [
            self.state_column(11),
            self.local_column(22),
            self.peer_column(22),
            Column("timer", "Next probe", 17, get=lambda s: s.timer.expires_ms, comparable=True,
                   fmt=lambda s: fmt.timer_text(s.timer, self.elapsed_ms())),
            Column("probes", "Probes", 7, get=lambda s: s.timer.retrans if s.timer else 0, justify="right"),
            self.owner_column(22),
        ]

    def select_rows(self, snapshot: Snapshot) -> Iterable[Socket]:
        return [s for s in snapshot.sockets if s.timer is not None and s.timer.kind == TIMER_KEEPALIVE]

    def info_text(self) -> Text:
        n = self.table.total_count
        return Text(f"{n} socket{'s' if n != 1 else ''} with a keepalive timer running", style="bold")


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
        self.keepalive = None  # Keepalive read from the kernel for self.socket
        self.read_note = ""
        self.reader = read_socket_keepalive  # seam: tests inject a deterministic reader
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
        self.query_one("#ka-system", Static).border_title = "System defaults (sysctl)"
        self.query_one("#ka-selected", Static).border_title = "Selected socket"
        self.set_interval(0.5, self._render_selected)
        self._redraw()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 110, "-narrow")

    def focus_table(self) -> None:
        self.timers.focus_table()

    # ------------------------------------------------------------------ data in
    def show_snapshot(self, snapshot: Snapshot, summary=None) -> None:
        self.summary = summary
        self.timers.show_snapshot(snapshot, summary)
        if self.socket is not None:
            fresh = self.lookup(self.socket) if self.lookup is not None else None
            if fresh is not None:
                self.socket = fresh
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

    def reread(self) -> None:
        if self.socket is not None:
            self._read(self.socket, self.owner)

    @work(thread=True, exclusive=True, group="keepalive-read")
    def _read(self, sock: Socket, owner: Process | None) -> None:
        try:
            ka, note = self.reader(sock, owner)
        except Exception as exc:  # noqa: BLE001 - shown in the pane, never fatal
            ka, note = None, f"could not read options: {exc}"
        self.app.call_from_thread(self._read_done, sock, ka, note)

    def _read_done(self, sock: Socket, ka, note: str) -> None:
        if self.socket is None or sock.key != self.socket.key:
            return
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
        self.query_one("#ka-system", Static).update(t)
        self._render_selected()

    def _render_selected(self) -> None:
        if not self._ready:
            return
        box = self.query_one("#ka-selected", Static)
        sock = self.socket
        if sock is None:
            box.update(Text("Select a socket in Connections, Listening or the timer list.", style="dim italic"))
            return
        t = Table.grid(padding=(0, 1))
        t.add_column(style="dim")
        t.add_column()
        t.add_row("socket", Text(f"{fmt.local_of(sock)} → {fmt.peer_of(sock)}"))
        t.add_row("state", state_text(sock.state, bold=True))
        t.add_row("owner", fmt.safe_text(fmt.owner_text(self.owner) or "—"))
        ka = self.keepalive
        if ka is not None:
            t.add_row("SO_KEEPALIVE", Text("on", style="bold #4ec94e") if ka.enabled else Text("off", style="bold #e5c07b"))
            t.add_row("TCP_KEEPIDLE", f"{ka.idle} s")
            t.add_row("TCP_KEEPINTVL", f"{ka.intvl} s")
            t.add_row("TCP_KEEPCNT", str(ka.cnt))
            if ka.enabled:
                t.add_row("dead peer after", Text(f"{ka.dead_peer_seconds} s idle (= {ka.idle} + {ka.intvl} × {ka.cnt})",
                                                  style="bold"))
            else:
                t.add_row("dead peer", Text("never noticed by keepalive (only when sending times out)", style="italic"))
        t.add_row("read", fmt.safe_text(self.read_note or "—", style="dim"))
        timer = sock.timer
        elapsed = self.timers.elapsed_ms()
        if timer is not None and timer.kind == TIMER_KEEPALIVE:
            remaining = fmt.timer_remaining_ms(timer, elapsed) or 0.0
            t.add_row("keepalive timer", Text(f"next probe in {fmt.seconds(remaining)}, {timer.retrans} sent unanswered",
                                              style="#56b6c2"))
            if ka is not None and ka.enabled:
                left = max(0, ka.cnt - timer.retrans)
                detect = remaining / 1000 + ka.intvl * left
                t.add_row("if the peer died now", Text(f"detected in ≈ {detect:.0f} s "
                                                       f"(next probe + {left} × {ka.intvl} s)", style="bold"))
        elif timer is not None and timer.kind:
            t.add_row("timer", fmt.timer_text(timer, elapsed))
        else:
            t.add_row("timer", Text("none running", style="dim"))
        box.update(t)
