"""The sockmon terminal UI.

Data flow (message-only thread boundary):

    Collector thread --on_update(Update)--> _from_collector: keep it as the newest, queue its transitions,
    post SnapshotReady --(UI thread)--> on_snapshot_ready: drop it if a newer one exists (newest wins),
    else apply_update → panes, status bar, history, timeline, open detail screen.

Engines (built-in client/server) post EngineEvent from their panes; the app forwards them to the
timeline and turns failures into notifications. Nothing here blocks on I/O.

Test seam: ``SockmonApp(collector_factory=None)`` starts no collector; feed it with
``app.apply_update(update)`` (any object with the Update attributes) or ``app.inject_snapshot(snapshot)``.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from sockmon.core.lab.events import EventKind
from sockmon.core.records import SOCKET_STATE, Snapshot, Socket, Transition
from sockmon.core.table.history import TransitionHistory
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane
from sockmon.tui.lab.timeline import TimelinePane
from sockmon.tui.messages import (
    CollectionFailed,
    EngineEvent,
    SnapshotReady,
    SocketActivated,
    SocketSelected,
    TransitionsSeen,
)
from sockmon.tui.screens.detail import DetailScreen
from sockmon.tui.screens.help import HelpScreen
from sockmon.tui.screens.options import SocketOptionsScreen
from sockmon.tui.table.connections import ConnectionsPane
from sockmon.tui.table.keepalive import KeepalivePane
from sockmon.tui.table.listening import ListeningPane
from sockmon.tui.widgets.status import StatusBar
from sockmon.tui.widgets.virtual_table import VirtualTable
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

INTERVALS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# tab id -> (title, key)
TABS = {
    "sockets": "1 Listening+Connections",
    "keepalive": "2 Keepalive",
    "client": "3 Client",
    "server": "4 Server",
    "timeline": "5 Timeline",
}
NON_ROOT_BANNER = ("non-root: owners of other users' sockets hidden (/proc/PID/fd needs root) · transitions "
                   "inferred, not exact (tracefs needs root) · other processes' options unreadable (pidfd_getfd)")
# the same limits in one line of an 80-column terminal
NON_ROOT_BANNER_SHORT = "non-root: other users' owners, exact transitions, others' options need root"
INTERVAL = Binding.Group("Interval", compact=True)


def default_collector_factory(*, interval: float, netns: str | None, on_update: Callable[[Any], None]):
    from sockmon.core.table.collector import Collector

    return Collector(interval=interval, netns=netns, on_update=on_update)


def make_update(snapshot: Snapshot, transitions: Iterable[Transition] = (), summary=None, *,
                duration_ms: float = 0.0, transition_source: str = "inferred", overruns: int = 0,
                error: str | None = None) -> SimpleNamespace:
    """An Update-shaped record for tests and tools that feed the app without a collector."""
    return SimpleNamespace(snapshot=snapshot, diff=None, transitions=tuple(transitions), summary=summary,
                           duration_ms=duration_ms, overruns=overruns, transition_source=transition_source,
                           error=error, note="", dropped_transitions=0)


class SockmonApp(App[int]):
    TITLE = "sockmon"
    CSS_PATH = "app.tcss"

    BINDINGS = [
        Binding("1", "show_pane('sockets')", "Listening+Connections", show=False, id="pane.sockets"),
        Binding("2", "show_pane('keepalive')", "Keepalive", show=False, id="pane.keepalive"),
        Binding("3", "show_pane('client')", "Client", show=False, id="pane.client"),
        Binding("4", "show_pane('server')", "Server", show=False, id="pane.server"),
        Binding("5", "show_pane('timeline')", "Timeline", show=False, id="pane.timeline"),
        Binding("l", "show_pane('listening')", "Listening", show=False, id="pane.listening"),
        Binding("c", "show_pane('connections')", "Connections", show=False, id="pane.connections"),
        Binding("k", "show_pane('keepalive')", "Keepalive", show=False, id="pane.keepalive_k"),
        Binding("t", "show_pane('timeline')", "Timeline", show=False, id="pane.timeline_t"),
        Binding("slash", "filter", "Filter", show=True, id="filter"),
        Binding("p", "pause", "Pause", show=True, id="pause"),
        Binding("p", "resume", "Resume", show=True, id="resume"),  # only one of the two is active: see check_action
        Binding("r", "refresh_now", "Refresh", show=False, id="refresh"),
        Binding("o", "socket_options", "Options", show=True, id="socket.options",
                tooltip="Options: change SO_LINGER / keepalive of the selected socket (another process's after "
                        "confirmation, as root)"),
        Binding("plus,equals_sign", "slower", "Slower", show=True, key_display="+", id="interval.up", group=INTERVAL),
        Binding("minus", "faster", "Faster", show=True, key_display="-", id="interval.down", group=INTERVAL),
        Binding("question_mark,f1", "help", "Help", show=True, key_display="?", id="help"),
        Binding("q", "quit", "Quit", show=True, id="quit"),
    ]

    def __init__(self, *, interval: float = 1.0, netns: str | None = None,
                 collector_factory: Callable[..., Any] | None = default_collector_factory,
                 is_root: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = float(interval)
        self.netns = netns
        self.collector_factory = collector_factory
        self.collector = None
        self.is_root = (os.geteuid() == 0) if is_root is None else is_root
        self.clock = clock
        self.paused = False
        self._frozen_at: float | None = None  # while paused: the moment every countdown shows
        self.snapshot: Snapshot | None = None
        self.summary = None
        self.history = TransitionHistory()
        self.selected: Socket | None = None
        self.updates_applied = 0
        self.last_apply_ms: float | None = None
        self._latest = None  # newest Update handed over by the collector thread
        self._pending_transitions: deque[Transition] = deque()
        self._last_error: str | None = None
        self._owners_by_inode: dict = {}

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        if not self.is_root:
            yield Static(NON_ROOT_BANNER, id="banner", markup=False)
        with TabbedContent(initial="sockets", id="tabs"):
            with TabPane(TABS["sockets"], id="sockets"):
                with Vertical(id="sockets-box"):
                    yield ListeningPane(id="listening")
                    yield ConnectionsPane(id="connections")
            with TabPane(TABS["keepalive"], id="keepalive"):
                yield KeepalivePane(id="keepalive-pane")
            with TabPane(TABS["client"], id="client"):
                yield ClientPane()
            with TabPane(TABS["server"], id="server"):
                yield ServerPane()
            with TabPane(TABS["timeline"], id="timeline"):
                yield TimelinePane()
        yield StatusBar(id="status")
        yield Footer(compact=True)

    def on_resize(self) -> None:
        if not self.is_root:
            wide = self.size.width >= len(NON_ROOT_BANNER) + 2
            for banner in self.query("#banner").results(Static):
                banner.update(NON_ROOT_BANNER if wide else NON_ROOT_BANNER_SHORT)

    @property
    def listening(self) -> ListeningPane:
        return self.query_one("#listening", ListeningPane)

    @property
    def connections(self) -> ConnectionsPane:
        return self.query_one("#connections", ConnectionsPane)

    @property
    def keepalive(self) -> KeepalivePane:
        return self.query_one("#keepalive-pane", KeepalivePane)

    @property
    def timeline(self) -> TimelinePane | None:
        found = self.query(TimelinePane)
        return found.first() if found else None

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    def on_mount(self) -> None:
        self.status.show(interval=self.interval, is_root=self.is_root, netns=self.netns,
                         transition_source=None if self.collector_factory else "injected")
        self.connections.focus_table()
        if self.collector_factory is not None:
            self._start_collector()

    @work(thread=True, exclusive=True, group="collector-start", exit_on_error=False)
    def _start_collector(self) -> None:
        # Building the collector may set up a tracefs instance: never on the UI thread.
        try:
            collector = self.collector_factory(interval=self.interval, netns=self.netns,
                                               on_update=self._from_collector)
            if hasattr(collector, "start"):
                collector.start()
        except Exception as exc:  # noqa: BLE001 - shown, the app keeps running
            self.post_message(CollectionFailed(f"cannot start the collector: {exc}"))
            return
        self.call_from_thread(self._collector_ready, collector)

    def _collector_ready(self, collector) -> None:
        self.collector = collector
        if self.paused and hasattr(collector, "pause"):
            collector.pause()
        source = getattr(collector, "transition_source", None)
        note = getattr(collector, "tracer_note", "")
        self.status.show(transition_source=source)
        if note and self.is_root:
            self.notify(note, title="transitions", severity="warning")

    def _stop_collector(self) -> None:
        collector, self.collector = self.collector, None
        if collector is not None:
            try:
                collector.stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass

    async def action_quit(self) -> None:
        self._stop_collector()
        self.exit(0)

    def on_unmount(self) -> None:
        self._stop_collector()

    # ------------------------------------------------------------------ collector → UI
    def _from_collector(self, update) -> None:
        """Collector thread: hand over, never touch widgets. Transitions are never dropped."""
        if update.transitions:
            self._pending_transitions.extend(update.transitions)
        self._latest = update
        self.post_message(SnapshotReady(update))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self._closing or not self.screen_stack:
            return  # shutting down
        if message.update is not self._latest:
            return  # a newer snapshot is already queued: newest wins
        transitions = []
        while self._pending_transitions:
            transitions.append(self._pending_transitions.popleft())
        self.apply_update(message.update, transitions)

    def on_collection_failed(self, message: CollectionFailed) -> None:
        self._report_error(message.error)

    def request_refresh(self) -> None:
        """Collect now (lab panes call this after an action so the tables catch up at once)."""
        if self.collector is not None:
            self.collector.refresh_now()

    def inject_snapshot(self, snapshot: Snapshot, transitions: Iterable[Transition] = (), summary=None,
                        **kw) -> None:
        self.apply_update(make_update(snapshot, transitions, summary, **kw))

    def apply_update(self, update, transitions: Iterable[Transition] | None = None) -> None:
        """Show one Update (UI thread). Never raises: a bug here becomes a notification."""
        t0 = time.perf_counter()
        try:
            self._apply(update, list(update.transitions if transitions is None else transitions))
        except Exception as exc:  # noqa: BLE001 - the app never dies on a bad update
            self._report_error(f"display failed: {type(exc).__name__}: {exc}")
        self.last_apply_ms = (time.perf_counter() - t0) * 1000.0

    def _apply(self, update, transitions: list[Transition]) -> None:
        error = getattr(update, "error", None)
        snapshot = getattr(update, "snapshot", None)
        if transitions:
            self.history.add(transitions)
            timeline = self.timeline
            if timeline is not None:
                timeline.add_transitions(transitions)
            self.post_message(TransitionsSeen(transitions))
        status = dict(collect_ms=getattr(update, "duration_ms", None),
                      transition_source=getattr(update, "transition_source", None),
                      overruns=int(getattr(update, "overruns", 0) or 0) + int(getattr(update, "dropped_transitions", 0) or 0))
        if error:
            self._report_error(error)
            self.status.show(**status)
            return
        if self._last_error is not None:
            self._last_error = None
            status["error"] = None
        if snapshot is None:
            self.status.show(**status)
            return
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"not a Snapshot: {type(snapshot).__name__}")
        summary = getattr(update, "summary", None)
        if self._frozen_at is not None:  # paused, refreshed once (r): show this snapshot as it was taken
            self._frozen_at = max(self._frozen_at, snapshot.taken_at)
        self.snapshot, self.summary = snapshot, summary
        self.updates_applied += 1
        self.listening.show_snapshot(snapshot, summary)
        self.connections.show_snapshot(snapshot, summary)
        self.keepalive.lookup = self.fresh_record
        self.keepalive.show_snapshot(snapshot, summary)
        self._size_listening()
        counts = Counter(map(SOCKET_STATE, snapshot.sockets))
        self.status.show(counts=dict(counts), total=len(snapshot.sockets), source=snapshot.source, **status)
        self._update_detail()

    def _size_listening(self) -> None:
        # Listeners are usually few: give them what they need (CSS caps it at 40% of the tab).
        pane = self.listening
        table = pane.table
        rows = max(1, table.row_count)
        width = (pane.size.width or self.size.width) - 2  # inside the border
        extra = 1 if table._total_width > width - 1 else 0  # horizontal scrollbar
        pane.styles.height = rows + 4 + extra  # border 2 + info 1 + header 1 (+ scrollbar)

    def _report_error(self, error: str) -> None:
        try:
            self.status.show(error=error)
        except Exception:  # noqa: BLE001 - shutting down: no status bar any more
            return
        if error != self._last_error:
            self._last_error = error
            self.notify(error, title="sockmon", severity="error", timeout=8, markup=False)

    def _update_detail(self) -> None:
        screen = self.screen
        if not isinstance(screen, DetailScreen) or self.snapshot is None:
            return
        fresh = self.fresh_record(screen.sock)
        screen.update_socket(fresh, self.snapshot.owner(fresh) if fresh else None,
                             self.history.for_socket(screen.sock), self.snapshot.taken_at)

    def view_clock(self) -> float:
        """The time countdowns and row marks are drawn at: frozen while paused, so the screen shows the
        frozen snapshot as it was (a timer never counts down past what the kernel said)."""
        return self._frozen_at if self._frozen_at is not None else self.clock()

    def on_base_screen(self) -> bool:
        return self.screen is self.screen_stack[0]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        if action in ("filter", "show_pane"):
            return self.on_base_screen()  # not under Detail / Help: nothing there to filter or switch
        return True

    # ------------------------------------------------------------------ selection, detail, engines
    def fresh_record(self, sock: Socket) -> Socket | None:
        """The newest snapshot's record of ``sock`` (same identity), via the tables' key maps: O(1)."""
        for pane in (self.connections, self.listening):
            table = pane.table
            row = table._rows.get(table.key_fn(sock))
            if row is not None:
                return row
        return None

    def owner_of(self, sock: Socket | None):
        if sock is None:
            return None
        for pane in (self.connections, self.listening, self.keepalive.timers):
            owner = pane.owner_of(sock)
            if owner is not None:
                return owner
        return None

    def on_socket_selected(self, message: SocketSelected) -> None:
        sock = message.socket
        self.selected = sock
        try:
            keepalive = self.keepalive
            if keepalive.wants_selection(message.origin, message.by_user):
                keepalive.show_socket(sock, self.owner_of(sock), origin=message.origin, by_user=message.by_user)
        except Exception as exc:  # noqa: BLE001
            self._report_error(f"keepalive pane: {exc}")
        # The timeline follows what the user points at, not where a cursor lands after a refresh.
        if message.by_user and message.origin in ("connections", "listening"):
            timeline = self.timeline
            if timeline is not None:
                timeline.show_socket(sock)

    def on_socket_activated(self, message: SocketActivated) -> None:
        self.open_detail(message.socket)

    def open_detail(self, sock: Socket | None = None) -> None:
        sock = sock or self.selected
        if sock is None:
            self.notify("no socket selected", severity="warning")
            return
        timeline = self.timeline
        if timeline is not None:
            timeline.show_socket(sock)
        taken = self.snapshot.taken_at if self.snapshot is not None else None
        self.push_screen(DetailScreen(sock, self.owner_of(sock), self.history.for_socket(sock), taken))

    def open_options(self, sock: Socket | None = None) -> None:
        """SO_LINGER / keepalive of a socket in the table: ours directly, another process's after confirming."""
        sock = sock or self.selected
        if sock is None:
            self.notify("no socket selected: pick one in Connections, Listening or Keepalive", severity="warning")
            return
        self.push_screen(SocketOptionsScreen(sock, self.owner_of(sock)))

    def on_engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        timeline = self.timeline
        if timeline is not None:
            try:
                timeline.add_events([ev])
            except Exception as exc:  # noqa: BLE001
                self._report_error(f"timeline: {exc}")
        if ev.kind in (EventKind.FAILED, EventKind.ERROR):
            line = ev.detail or ev.kind.value
            if ev.errno_name:
                line = f"{line}: {ev.errno_name}: {ev.meaning} → {ev.action}"
            self.notify(line, title=message.origin, severity="error", timeout=8, markup=False)

    # ------------------------------------------------------------------ actions
    def action_show_pane(self, name: str) -> None:
        tab = {"listening": "sockets", "connections": "sockets"}.get(name, name)
        if isinstance(self.screen, Screen) and self.screen is not self.screen_stack[0]:
            return  # a modal/detail screen is up
        self.query_one("#tabs", TabbedContent).active = tab
        self.call_after_refresh(self._focus_pane, name)

    def _focus_pane(self, name: str) -> None:
        if name in ("sockets", "connections"):
            self.connections.focus_table()
        elif name == "listening":
            self.listening.focus_table()
        elif name == "keepalive":
            self.keepalive.focus_table()
            self.keepalive.show_cursor_row()
        else:
            pane = self.query_one(f"#{name}", TabPane)
            for widget in pane.query("*"):
                if widget.focusable:
                    widget.focus()
                    break

    def action_filter(self) -> None:
        if not self.on_base_screen():
            return
        self.action_show_pane("sockets")
        self.call_after_refresh(self.connections.action_focus_filter)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._frozen_at = self.clock() if self.paused else None
        if self.collector is not None:
            (self.collector.pause if self.paused else self.collector.resume)()
        self.status.show(paused=self.paused)
        self.refresh_bindings()  # the footer says Pause or Resume
        for pane in (self.listening, self.connections, self.keepalive.timers):
            pane.table.refresh()  # countdowns freeze (or run again) now, not at the next tick
        self.notify("collection paused, countdowns frozen (p resumes, r refreshes once)" if self.paused
                    else "collection resumed", timeout=2)

    def action_pause(self) -> None:
        if not self.paused:
            self.action_toggle_pause()

    def action_resume(self) -> None:
        if self.paused:
            self.action_toggle_pause()

    def action_refresh_now(self) -> None:
        self.request_refresh()

    def _set_interval(self, seconds: float) -> None:
        self.interval = seconds
        if self.collector is not None:
            self.collector.set_interval(seconds)
        self.status.show(interval=seconds)

    def action_slower(self) -> None:
        bigger = [i for i in INTERVALS if i > self.interval + 1e-9]
        self._set_interval(bigger[0] if bigger else INTERVALS[-1])

    def action_faster(self) -> None:
        smaller = [i for i in INTERVALS if i < self.interval - 1e-9]
        self._set_interval(smaller[-1] if smaller else INTERVALS[0])

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_detail(self) -> None:
        self.open_detail()

    def action_socket_options(self) -> None:
        if self.on_base_screen():
            self.open_options()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        panes = [("Show Listening", "listening"), ("Show Connections", "connections"), ("Show Keepalive", "keepalive"),
                 ("Show Client", "client"), ("Show Server", "server"), ("Show Timeline", "timeline")]
        for title, name in panes:
            yield SystemCommand(title, f"switch to the {name} pane", lambda n=name: self.action_show_pane(n))
        yield SystemCommand("Filter connections", "type a filter: state, port, addr:, proc:", self.action_filter)
        yield SystemCommand("Pause / resume collection", "stop or restart refreshing (p)", self.action_toggle_pause)
        yield SystemCommand("Refresh now", "collect a snapshot immediately (r)", self.action_refresh_now)
        yield SystemCommand("Slower refresh", "increase the interval (+)", self.action_slower)
        yield SystemCommand("Faster refresh", "decrease the interval (-)", self.action_faster)
        yield SystemCommand("Socket detail", "every field of the selected socket (Enter)", self.action_detail)
        yield SystemCommand("Socket options", "change SO_LINGER / keepalive of the selected socket (o)",
                            self.open_options)
        for action, title in (("sort_next", "Sort by next column"), ("sort_prev", "Sort by previous column"),
                              ("sort_reverse", "Reverse the sort order")):
            keys = ", ".join(b.key_display or b.key for b in VirtualTable.BINDINGS if b.action == action)
            yield SystemCommand(title, f"in the focused socket list ({keys})",
                                lambda a=action: self._sort_focused(a))
        yield SystemCommand("Sockmon help", "panes, keys, filter syntax, colours (?)", self.action_help)
        # every key of the lab panes, by name (they act on the pane even when its tab is hidden)
        for pane_cls, tab in ((ClientPane, "client"), (ServerPane, "server"), (TimelinePane, "timeline")):
            found = self.query(pane_cls)
            if not found:
                continue
            pane = found.first()
            for b in pane_cls.BINDINGS:
                if not isinstance(b, Binding) or b.key == "escape":
                    continue
                yield SystemCommand(f"{tab.title()}: {b.description}",
                                    f"{b.tooltip or b.description} (key {b.key} in the {tab.title()} pane)",
                                    lambda p=pane, a=b.action, t=tab: self._run_pane_action(p, a, t))

    async def _run_pane_action(self, pane, action: str, tab: str) -> None:
        self.action_show_pane(tab)
        await self.run_action(action, pane)

    def _sort_focused(self, action: str = "sort_next") -> None:
        target = self.focused if isinstance(self.focused, VirtualTable) else self.connections.table
        getattr(target, f"action_{action}")()


def run_app(interval: float = 1.0, netns: str | None = None) -> int:
    app = SockmonApp(interval=interval, netns=netns)
    result = app.run()
    return int(result or app.return_code or 0)
