"""The sockmon terminal UI.

Data flow (message-only thread boundary; ARCHITECTURE.md "Data path"):

    Collector thread --on_update(Update)--> _from_collector: keep it as the newest, queue its transitions
    (bounded, lossless unless the UI stalls), post SnapshotReady(update) (can_replace: the newest wins)
    --(UI thread)--> on_snapshot_ready → apply_update: history, the lab's timeline model (transitions and
    the snapshot), Listening / Connections (row marks from the core's diff), Keepalive, the status bar
    (counts from Summary.by_state), an open detail screen.

The lab panes post facts (EngineEvent, ClientConnecting, ClientEndpointsKnown, ClientFdClosed); the
``@on`` handlers here hand them to one LabWiring (tui/lab/wiring.py), which feeds the timeline model and
refreshes its views. No pane calls another. Nothing here blocks on I/O.

Shutdown: every way out (``q``, the palette, SIGTERM / SIGHUP / SIGINT) goes through `shutdown()`, which
stops the collector (its thread, and the tracefs instance it made) and the lab engines (their sockets)
before the app exits; Textual then leaves the alternate screen, turns mouse reporting off and shows the
cursor. `run_app` turns the three signals into that clean exit (status 0).

Test seam: ``SockmonApp(collector_factory=None)`` starts no collector; feed it with
``app.apply_update(update)`` (a core.table.collector.Update, e.g. from ``make_update``) or
``app.inject_snapshot(snapshot)``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sockmon.core.lab.events import EventKind
from sockmon.core.netns import ALL_NETNS
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.states import LISTEN, STATE_CODES
from sockmon.core.table.closed import ClosedHistory
from sockmon.core.table.collector import DUMP_TICK_BUDGET, Update
from sockmon.core.table.diff import diff as snapshot_diff
from sockmon.core.table.history import TransitionHistory, four_tuple_key
from sockmon.core.table.rates import process_totals, rates_between
from sockmon.core.table.statemachine import StateDiagram
from sockmon.core.table.summary import Summary, summarize
from sockmon.core.text import inert
from sockmon.tui.diagram.pane import DiagramPane
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.forms import LabPane, event_error_line, quiet_stop
from sockmon.tui.lab.server import ServerPane
from sockmon.tui.lab.timeline import TimelinePane
from sockmon.tui.lab.wiring import LabWiring
from sockmon.tui.messages import (
    ClientConnecting,
    ClientEndpointsKnown,
    ClientFdClosed,
    ClosedActivated,
    CollectionFailed,
    ColumnsRequested,
    EngineEvent,
    KillRequested,
    LadderPacketsCaptured,
    LadderUnavailableSeen,
    ListenerRow,
    NamesResolved,
    ProcessActivated,
    ScenarioSockets,
    SnapshotReady,
    SocketActivated,
    SocketSelected,
)
from sockmon.tui.scenarios.pane import ScenariosPane
from sockmon.tui.screens.closed import ClosedScreen
from sockmon.tui.screens.columns import ColumnChooser
from sockmon.tui.screens.detail import DetailScreen
from sockmon.tui.screens.fleet import FleetScreen
from sockmon.tui.screens.help import HelpScreen
from sockmon.tui.screens.kill import KillScreen
from sockmon.tui.screens.netns import NetnsChoice, NetnsScreen
from sockmon.tui.screens.options import SocketOptionsScreen
from sockmon.tui.table.closed import ClosedPane
from sockmon.tui.table.connections import ConnectionsPane
from sockmon.tui.table.keepalive import KeepalivePane
from sockmon.tui.table.listening import ListeningPane
from sockmon.tui.table.processes import ProcessesPane
from sockmon.tui.table.socket_list import SOCKET_TYPE_MODES, TCP_ONLY
from sockmon.tui.widgets.columns import ColumnChoice, ColumnPrefs, default_config_path
from sockmon.tui.widgets.status import StatusBar
from sockmon.tui.widgets.virtual_table import VirtualTable
from textual import on, work
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
    "history": "6 History",
    "scenarios": "7 Scenarios",
    "diagram": "8 Diagram",
}
NON_ROOT_BANNER = ("non-root: owners of other users' sockets hidden (/proc/PID/fd needs root) · transitions "
                   "inferred, not exact (tracefs needs root) · other processes' options unreadable (pidfd_getfd)")
# the same limits in one line of an 80-column terminal
NON_ROOT_BANNER_SHORT = "non-root: other users' owners, exact transitions, others' options need root"
INTERVAL = Binding.Group("Interval", compact=True)
# SIGTERM (kill, systemd), SIGHUP (the terminal went away), SIGINT (kill -INT; Ctrl+C is a key in raw mode)
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
ENGINE_STOP_TIMEOUT = 3.0  # seconds for all lab engines together (a lingering close may block)
# Transitions handed over by the collector thread and not yet shown: a stalled UI drops the oldest
# beyond this (counted with the overruns in the status bar).
MAX_PENDING_TRANSITIONS = 200_000
_TCP = 6  # socket.IPPROTO_TCP: the rows the event-driven table refreshes
# columns whose values the event-driven table keeps fresh only for the rows on screen: sorting a socket
# list on one of them makes every tick a full dump while it lasts (Collector.need_full_table)
LIVE_SORT_COLUMNS = frozenset({"rx", "tx", "recv_q", "send_q", "timer", "rtt", "cwnd", "retrans", "queue", "probes"})


def default_collector_factory(*, interval: float, netns: str | None, on_update: Callable[[Any], None]):
    from sockmon.core.table.collector import Collector

    # full dumps (without the event-driven table) spaced to stay within DUMP_TICK_BUDGET of a core
    return Collector(interval=interval, netns=netns, on_update=on_update, dump_budget=DUMP_TICK_BUDGET)


def make_update(snapshot: Snapshot, transitions: Iterable[Transition] = (), summary: Summary | None = None, *,
                prev: Snapshot | None = None, duration_ms: float = 0.0, transition_source: str = "inferred",
                overruns: int = 0, error: str | None = None) -> Update:
    """A collector `Update` for tests and tools that feed the app without a collector: the diff against
    ``prev``, the summary (without the system counters), the rates since ``prev`` and the totals per process
    computed by the core, as the collector does."""
    d = snapshot_diff(prev, snapshot) if prev is not None else None
    if summary is None:
        summary = summarize(snapshot, read_system=False)
    rates = rates_between(prev, snapshot) if prev is not None else None
    return Update(snapshot, d, tuple(transitions), summary, duration_ms, overruns, transition_source, error,
                  base_taken_at=prev.taken_at if prev is not None else None, rates=rates,
                  processes=process_totals(snapshot, rates))


class SockmonApp(App[int]):
    TITLE = "sockmon"
    NOTIFIES_ENGINE_FAILURES = True  # the lab panes show FAILED / ERROR inline only: the app notifies
    CSS_PATH = "app.tcss"

    BINDINGS = [
        Binding("1", "show_pane('sockets')", "Listening+Connections", show=False, id="pane.sockets"),
        Binding("2", "show_pane('keepalive')", "Keepalive", show=False, id="pane.keepalive"),
        Binding("3", "show_pane('client')", "Client", show=False, id="pane.client"),
        Binding("4", "show_pane('server')", "Server", show=False, id="pane.server"),
        Binding("5", "show_pane('timeline')", "Timeline", show=False, id="pane.timeline"),
        Binding("6", "show_pane('history')", "History", show=False, id="pane.history"),
        Binding("7", "show_pane('scenarios')", "Scenarios", show=False, id="pane.scenarios"),
        Binding("8", "show_pane('diagram')", "Diagram", show=False, id="pane.diagram"),
        # from inside a text field too (digits there are text); also what Esc-then-digit arrives as
        Binding("alt+1", "show_pane('sockets')", "Listening+Connections", show=False, id="pane.sockets_alt"),
        Binding("alt+2", "show_pane('keepalive')", "Keepalive", show=False, id="pane.keepalive_alt"),
        Binding("alt+3", "show_pane('client')", "Client", show=False, id="pane.client_alt"),
        Binding("alt+4", "show_pane('server')", "Server", show=False, id="pane.server_alt"),
        Binding("alt+5", "show_pane('timeline')", "Timeline", show=False, id="pane.timeline_alt"),
        Binding("alt+6", "show_pane('history')", "History", show=False, id="pane.history_alt"),
        Binding("alt+7", "show_pane('scenarios')", "Scenarios", show=False, id="pane.scenarios_alt"),
        Binding("alt+8", "show_pane('diagram')", "Diagram", show=False, id="pane.diagram_alt"),
        Binding("D", "show_pane('diagram')", "Diagram", show=False, id="pane.diagram_d",
                tooltip="State diagram: TCP's state machine live (counts, transitions per second, the followed path)"),
        Binding("l", "show_pane('listening')", "Listening", show=False, id="pane.listening"),
        Binding("c", "show_pane('connections')", "Connections", show=False, id="pane.connections"),
        Binding("t", "show_pane('timeline')", "Timeline", show=False, id="pane.timeline_t"),
        Binding("h", "show_pane('history')", "History", show=False, id="pane.history_h"),
        Binding("slash", "filter", "Filter", show=True, id="filter"),
        Binding("g", "toggle_processes", "By process", show=False, id="processes",
                tooltip="Process view: connections and throughput per process (g again: back)"),
        Binding("p", "pause", "Pause", show=True, id="pause"),
        Binding("p", "resume", "Resume", show=True, id="resume"),  # only one of the two is active: see check_action
        Binding("r", "refresh_now", "Refresh", show=False, id="refresh"),
        Binding("N", "pick_netns", "Netns", show=False, id="netns.pick",
                tooltip="Namespace: show every network namespace, ours, a named one or a process's"),
        Binding("u", "cycle_socket_types", "TCP/UDP/UNIX", show=False, id="socket.types",
                tooltip="Socket types in Listening and Connections: TCP → TCP+UDP → UDP → UNIX → all"),
        Binding("n", "toggle_names", "Names", show=False, id="names",
                tooltip="Host names (reverse lookups in the background; may ask DNS for non-loopback "
                        "addresses) and service names (/etc/services) instead of numbers, like ss -r"),
        Binding("o", "socket_options", "Options", show=True, id="socket.options",
                tooltip="Options: change SO_LINGER / keepalive of the selected socket (another process's after "
                        "confirmation, as root)"),
        Binding("plus,equals_sign", "slower", "Slower", show=True, key_display="+", id="interval.up", group=INTERVAL),
        Binding("minus", "faster", "Faster", show=True, key_display="-", id="interval.down", group=INTERVAL),
        Binding("F", "fleet", "Fleet", show=False, id="fleet",
                tooltip="Fleet: every host's sockets from Prometheus (sockmon --prometheus URL)"),
        Binding("question_mark,f1", "help", "Help", show=True, key_display="?", id="help"),
        Binding("q", "quit", "Quit", show=True, id="quit"),
    ]

    def __init__(self, *, interval: float = 1.0, netns: str | None = None,
                 collector_factory: Callable[..., Any] | None = default_collector_factory,
                 is_root: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 handle_signals: bool = False, prometheus: str | None = None, columns_file=None) -> None:
        super().__init__()
        self.prometheus = prometheus  # the fleet screen's Prometheus base URL (None: it says how to enable it)
        # the socket lists' column order / visibility: for the session, and in columns_file when given
        self.column_prefs = ColumnPrefs.load(columns_file)
        self.handle_signals = handle_signals  # run_app: SIGTERM/SIGHUP/SIGINT exit cleanly (tests: off)
        self.exit_signal: int | None = None  # the signal that ended the app, if one did
        self.interval = float(interval)
        self.netns = netns  # --netns: where the lab panes create their sockets (the picker never moves them)
        self.view_netns: str | None = netns  # what the socket lists show: None (ours), ALL_NETNS or an ident
        self._view_label: str | None = netns
        self._switching = False  # a namespace was picked: updates of the previous view are dropped
        self.collector_factory = collector_factory
        self._one_panes: dict[type, Any] = {}  # _one_pane: kind → the pane, found once
        self.collector = None
        self.is_root = (os.geteuid() == 0) if is_root is None else is_root
        self.clock = clock
        self.paused = False
        self._frozen_at: float | None = None  # while paused: the moment every countdown shows
        self.snapshot: Snapshot | None = None
        self.summary = None
        self.history = TransitionHistory()
        # closed connections: snapshots observed on the collector thread, transitions added here
        self.closed = ClosedHistory(self.history)
        self.selected: Socket | None = None
        self.updates_applied = 0
        self.last_apply_ms: float | None = None
        self._latest = None  # newest Update handed over by the collector thread
        self._pending_transitions: deque[Transition] = deque(maxlen=MAX_PENDING_TRANSITIONS)
        self._dropped_transitions = 0  # by the bound above, since the last update shown
        self._last_error: str | None = None
        self.process_view = False  # the Connections pane's place shows the totals per process (g)
        self.lab = LabWiring(self)  # the lab panes' timeline model and its routes
        self.diagram = StateDiagram()  # the Diagram pane's model: fed every update, follows the lab's 4-tuple
        self.socket_types: frozenset[str] = TCP_ONLY  # what Listening / Connections show (`u`)
        self.names = None  # sockmon.core.names.Names while names are on (`n`); numbers by default
        self._names_obj = None  # kept across toggles: its cache survives turning names off and on
        self.host_resolve = None  # test seam: the blocking resolver the names thread calls (None: getnameinfo)
        self._names_posted = False
        self.last_kill = None  # the outcome of the latest kill (k), a core DestroyResult

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        if not self.is_root:
            yield Static(NON_ROOT_BANNER, id="banner", markup=False)
        with TabbedContent(initial="sockets", id="tabs"):
            with TabPane(TABS["sockets"], id="sockets"):
                with Vertical(id="sockets-box"):
                    yield ListeningPane(id="listening")
                    yield ConnectionsPane(id="connections")
                    processes = ProcessesPane(id="processes")
                    processes.display = False
                    yield processes
            with TabPane(TABS["keepalive"], id="keepalive"):
                yield KeepalivePane(id="keepalive-pane")
            with TabPane(TABS["client"], id="client"):
                client = ClientPane()
                client.netns = self.netns  # the lab follows the namespace shown
                yield client
            with TabPane(TABS["server"], id="server"):
                server = ServerPane()
                server.netns = self.netns
                yield server
            with TabPane(TABS["timeline"], id="timeline"):
                yield TimelinePane(self.lab.model, ladder=self.lab.ladder)
            with TabPane(TABS["history"], id="history"):
                yield ClosedPane(id="closed")
            with TabPane(TABS["scenarios"], id="scenarios"):
                yield ScenariosPane(id="scenarios-pane")
            with TabPane(TABS["diagram"], id="diagram"):
                yield DiagramPane(self.diagram, id="diagram-pane")
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
    def processes(self) -> ProcessesPane:
        return self.query_one("#processes", ProcessesPane)

    @property
    def keepalive(self) -> KeepalivePane:
        return self.query_one("#keepalive-pane", KeepalivePane)

    @property
    def timeline(self) -> TimelinePane | None:
        return self._one_pane(TimelinePane)

    def _one_pane(self, kind: type) -> Any | None:
        """The app's one pane of ``kind`` (composed once: the timeline, the server, the diagram), found by
        a DOM walk only the first time and after it left the DOM: this runs every refresh."""
        pane = self._one_panes.get(kind)
        if pane is None or not pane.is_attached:
            found = self.query(kind)
            pane = found.first() if found else None
            if pane is None:
                return None
            self._one_panes[kind] = pane
        return pane

    def _socket_tables(self) -> list[VirtualTable]:
        """The tables of the socket-list panes (the rows the event-driven collector refreshes)."""
        return [pane.table for pane in self.socket_lists()]

    def socket_lists(self) -> list:
        """The socket-list panes (each with its own columns)."""
        return [self.listening, self.connections, self.keepalive.timers]

    @property
    def closed_pane(self) -> ClosedPane:
        return self.query_one("#closed", ClosedPane)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    def on_mount(self) -> None:
        if self.handle_signals:
            self._install_signal_handlers()
        if self.exit_signal is not None:  # a signal arrived while the app was starting
            self.exit_on_signal(self.exit_signal)
            return
        self.status.show(interval=self.interval, is_root=self.is_root, netns=self._view_label, lab_netns=self.netns,
                         transition_source=None if self.collector_factory else "injected")
        self.connections.focus_table()
        self.keepalive.lookup = self.fresh_record
        for pane in self.socket_lists():
            choice = self.column_prefs.get(pane.id or "")
            if choice is not None:
                pane.set_column_choice(choice)
        if self.column_prefs.error:
            self.notify(inert(self.column_prefs.error), title="columns", severity="warning", markup=False)
        if self.collector_factory is not None:
            self._start_collector()

    @work(thread=True, exclusive=True, group="collector-start", exit_on_error=False)
    def _start_collector(self) -> None:
        # Building the collector may set up a tracefs instance: never on the UI thread.
        try:
            collector = self.collector_factory(interval=self.interval, netns=self.view_netns,
                                               on_update=self._from_collector)
            if hasattr(collector, "start"):
                collector.start()
        except Exception as exc:  # noqa: BLE001 - shown, the app keeps running
            self.post_message(CollectionFailed(f"cannot start the collector: {exc}"))
            return
        self.call_from_thread(self._collector_ready, collector)

    def _collector_ready(self, collector) -> None:
        self.collector = collector
        if getattr(collector, "netns", self.view_netns) != self.view_netns:  # picked while it started
            collector.set_netns(self.view_netns)
        if self.paused and hasattr(collector, "pause"):
            collector.pause()
        if self.socket_types != TCP_ONLY and hasattr(collector, "set_protocols"):
            collector.set_protocols(self.socket_types)
            collector.refresh_now()
        if self.process_view and hasattr(collector, "want_processes"):
            collector.want_processes(True)
        source = getattr(collector, "transition_source", None)
        note = getattr(collector, "tracer_note", "")
        self.status.show(transition_source=source)
        if note and self.is_root:
            self.notify(inert(note), title="transitions", severity="warning", markup=False)

    # ------------------------------------------------------------------ socket types, names
    def action_cycle_socket_types(self) -> None:
        modes = SOCKET_TYPE_MODES
        i = modes.index(self.socket_types) if self.socket_types in modes else -1
        self.set_socket_types(modes[(i + 1) % len(modes)])

    def set_socket_types(self, types) -> None:
        """Listening and Connections show these types; the collector dumps UDP / UNIX only while shown."""
        self.socket_types = frozenset(types)
        for pane in (self.listening, self.connections):
            pane.set_socket_types(self.socket_types)
        collector = self.collector
        if collector is not None and hasattr(collector, "set_protocols"):
            collector.set_protocols(self.socket_types)
            self.request_refresh()

    def action_toggle_names(self) -> None:
        if self.names is None:
            if self._names_obj is None:
                from sockmon.core.names import HostNames, Names

                kw = {} if self.host_resolve is None else {"resolve": self.host_resolve}
                self._names_obj = Names(HostNames(on_resolved=self._name_arrived, **kw))
            self.names = self._names_obj
        else:
            self.names = None
        for pane in (self.listening, self.connections):
            pane.set_names(self.names)  # the panes' bottom borders say "names" while they are on

    def _name_arrived(self, _addr: str, _name) -> None:
        """Resolver thread: ask the UI thread to redraw, once until it has (post_message is thread-safe)."""
        if not self._names_posted:
            self._names_posted = True
            self.post_message(NamesResolved())

    def on_names_resolved(self, _message: NamesResolved) -> None:
        self._names_posted = False
        if self.names is not None:
            for pane in (self.listening, self.connections):
                pane.table.refresh()

    def _stop_collector(self) -> None:
        collector, self.collector = self.collector, None
        if collector is not None:
            try:
                collector.stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass

    def _stop_engines(self) -> None:
        """Stop the built-in client and server now (they close their sockets), in parallel, bounded."""
        engines = []
        for pane in self.query(LabPane):
            engine, pane.engine = getattr(pane, "engine", None), None
            if engine is not None:
                engines.append(engine)
        threads = [threading.Thread(target=quiet_stop, args=(e,), name="sockmon-engine-stop", daemon=True)
                   for e in engines]
        for t in threads:
            t.start()
        deadline = time.monotonic() + ENGINE_STOP_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def shutdown(self) -> None:
        """Stop everything that holds kernel state (collector + tracefs instance, engines + sockets, a
        running lab scenario + its sockets, namespaces and tracefs instance). Idempotent; every exit path
        calls it before the app exits."""
        self._stop_collector()
        if self._names_obj is not None:
            self._names_obj.close(timeout=0.2)
        try:
            self._stop_engines()
        except Exception:  # noqa: BLE001 - no DOM any more: the panes stopped their engines on unmount
            pass
        try:
            for pane in self.query(ScenariosPane):
                pane.stop_and_wait()
        except Exception:  # noqa: BLE001 - no DOM any more: the pane stopped its scenario on unmount
            pass

    async def action_quit(self) -> None:
        self.shutdown()
        self.exit(0)

    def exit_on_signal(self, signum: int) -> None:
        """SIGTERM / SIGHUP / SIGINT: the same clean exit as ``q``, status 0."""
        self.exit_signal = signum
        self.shutdown()
        self.exit(0)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in EXIT_SIGNALS:
            try:
                loop.add_signal_handler(sig, self.exit_on_signal, sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread: leave it be
                pass

    def on_unmount(self) -> None:
        self._stop_collector()

    # ------------------------------------------------------------------ collector → UI
    def _from_collector(self, update) -> None:
        """Collector thread: hand over, never touch widgets. Transitions are never dropped."""
        try:
            self.closed.observe(update)  # every snapshot, even those the UI will skip (thread-safe)
        except Exception as exc:  # noqa: BLE001 - the history misses one tick; the UI goes on
            self.post_message(CollectionFailed(f"closed-connection history: {type(exc).__name__}: {exc}"))
        if update.transitions:
            pending = self._pending_transitions
            over = len(pending) + len(update.transitions) - MAX_PENDING_TRANSITIONS
            if over > 0:
                self._dropped_transitions += over  # the deque drops the oldest
            pending.extend(update.transitions)
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

    def inject_snapshot(self, snapshot: Snapshot, transitions: Iterable[Transition] = (),
                        summary: Summary | None = None, **kw) -> None:
        """Show ``snapshot`` as if collected now, diffed against the snapshot shown (row marks)."""
        self.apply_update(make_update(snapshot, transitions, summary, prev=self.snapshot, **kw))

    def apply_update(self, update, transitions: Iterable[Transition] | None = None) -> None:
        """Show one Update (UI thread). Never raises: a bug here becomes a notification."""
        t0 = time.perf_counter()
        try:
            self._apply(update, list(update.transitions if transitions is None else transitions))
        except Exception as exc:  # noqa: BLE001 - the app never dies on a bad update
            self._report_error(f"display failed: {type(exc).__name__}: {exc}")
        self.last_apply_ms = (time.perf_counter() - t0) * 1000.0

    def _tell_visible(self) -> None:
        """With the event-driven table (core/table/evtable.py) the collector refreshes the numbers of
        the rows on screen each tick: tell it which TCP sockets those are (the tables shown now)."""
        col = self.collector
        if col is None or not getattr(col, "event_table", False):
            return
        keys = []
        live_sort = None
        for table in self._socket_tables():
            rows = table.on_screen_rows()  # none when not on screen (another tab, a hidden pane)
            for row in rows:
                if isinstance(row, Socket) and row.protocol == _TCP and row.netns is None:
                    keys.append((row.family, row.src, row.sport, row.dst, row.dport))
            if rows and table.sort_column in LIVE_SORT_COLUMNS and live_sort is None:
                live_sort = f"sorted by {table.column_label(table.sort_column)}"
        col.set_visible(keys)
        # a sort on numbers that only a full dump has fresh for every row: full dumps while it lasts
        if hasattr(col, "need_full_table") and live_sort != col.full_table_reason:
            col.need_full_table(live_sort)
            if live_sort is not None:
                col.refresh_now()

    def on_virtual_table_sort_changed(self, event: VirtualTable.SortChanged) -> None:
        self._tell_visible()  # a sort on live numbers resyncs at once, not at the next refresh

    def _apply(self, update: Update, transitions: list[Transition]) -> None:
        snapshot = update.snapshot
        closed = self.closed
        closed.observe(update)  # a no-op when the collector thread observed it already
        if transitions:  # into the transition history (Detail) and the closed-connection history
            closed.add_transitions(transitions, source=update.transition_source,
                                   upto=snapshot.taken_at if snapshot is not None else None)
        history = self.closed_pane
        if closed.version != history.version or update.transition_source != history.source:
            history.show_records(closed.records(), version=closed.version, total=closed.total,
                                 source=update.transition_source)
        self._route_diagram(None if update.error else snapshot, transitions, update.transition_source,
                            update.summary)
        dropped, self._dropped_transitions = self._dropped_transitions, 0
        status = dict(collect_ms=update.duration_ms, transition_source=update.transition_source,
                      overruns=update.overruns + update.dropped_transitions + dropped,
                      gap=getattr(self.collector, "tick_gap", None),
                      table="events" if getattr(self.collector, "event_table", False) else None,
                      full_reason=getattr(self.collector, "full_dump_reason", None))
        if update.error:
            self.lab.update(None, transitions)
            self._report_error(update.error)
            self.status.show(**status)
            return
        if self._last_error is not None:
            self._last_error = None
            status["error"] = None
        if snapshot is None:
            self.lab.update(None, transitions)
            self.status.show(**status)
            return
        if self._switching:
            if snapshot.netns != (None if self.view_netns is None else str(self.view_netns)):
                return  # collected for the view shown before the pick: the next update is the new view
            self._switching = False
            status["netns"] = self._view_label
        summary = update.summary
        # the core's diff gives the row marks when it is against the snapshot shown (none was skipped)
        shown = self.snapshot
        d = update.diff if (shown is not None and update.base_taken_at == shown.taken_at) else None
        if self._frozen_at is not None:  # paused, refreshed once (r): show this snapshot as it was taken
            self._frozen_at = max(self._frozen_at, snapshot.taken_at)
        self.snapshot, self.summary = snapshot, summary
        self.updates_applied += 1
        self.listening.show_snapshot(snapshot, summary, d)
        self.connections.set_rates(update.rates)
        self.connections.show_snapshot(snapshot, summary, d)
        if self.process_view:
            self._show_processes(update)
        self.keepalive.show_snapshot(snapshot, summary)
        self._size_listening()
        self._tell_visible()
        lab_seen = self._lab_ident(snapshot)  # False: the lab's namespace is not in this view
        self.lab.update(snapshot if lab_seen is not False else None, transitions, rates=update.rates)
        if lab_seen is not False:
            self._route_listener(snapshot, lab_seen)
        counts = {STATE_CODES[name]: n for name, n in summary.by_state.items() if name in STATE_CODES}
        self.status.show(counts=counts, total=summary.total, source=snapshot.source, **status)
        self._update_detail()

    def _route_diagram(self, snapshot: Snapshot | None, transitions: list[Transition], source: str,
                       summary=None) -> None:
        """The state diagram: this update's transitions and counts (the update's Summary: the table is not
        counted twice), then the 4-tuple the lab follows (its life so far from the transition history,
        which already holds this update's transitions)."""
        diagram = self.diagram
        diagram.update(snapshot, transitions, summary)
        followed = self.lab.model.followed_tuple
        if followed is not None and followed[1]:
            diagram.follow(followed, self.history.life(four_tuple_key(*followed)))
        else:
            diagram.follow(None)
        pane = self._one_pane(DiagramPane)
        if pane is not None:
            pane.show(snapshot.owners if snapshot is not None else None, source)

    def _lab_ident(self, snapshot: Snapshot) -> str | None | bool:
        """The ``Socket.netns`` of the lab's sockets in this snapshot: None in a one-namespace view of the
        lab's own namespace, the ident in the every-namespace view, False when the view does not hold it."""
        if snapshot.netns != ALL_NETNS:
            return None if snapshot.netns == self.netns else False
        for ref in snapshot.namespaces:
            if (ref.current if self.netns is None else ref.ident == self.netns):
                return ref.ident
        return False

    def _route_listener(self, snapshot: Snapshot, netns: str | None = None) -> None:
        """Hand the built-in server's listener row (its accept queue) to the Server pane, by message."""
        server = self._one_pane(ServerPane)
        if server is None:
            return
        addr = server.address if server.engine is not None else None
        if not addr:
            return
        host, port = str(addr[0]), int(addr[1])
        row = next((s for s in snapshot.sockets if s.state == LISTEN and s.sport == port and s.netns == netns
                    and str(s.src) in (host, "0.0.0.0", "::")), None)
        server.post_message(ListenerRow(row))

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
            self.notify(inert(error), title="sockmon", severity="error", timeout=8, markup=False)

    def _update_detail(self) -> None:
        screen = self.screen
        if not isinstance(screen, DetailScreen) or self.snapshot is None:
            return
        fresh = self.fresh_record(screen.sock)
        screen.update_socket(fresh, self.snapshot.owner(fresh) if fresh else None,
                             self.history.for_socket(screen.sock), self.snapshot.taken_at,
                             samples=self.lab.samples_for(screen.sock))

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
        if action in ("filter", "show_pane", "pick_netns", "toggle_processes"):
            return self.on_base_screen()  # not under Detail / Help: nothing there to filter or switch
        return True

    # ------------------------------------------------------------------ selection, detail, engines
    def fresh_record(self, sock: Socket) -> Socket | None:
        """The newest snapshot's record of ``sock`` (same identity), via the tables' key maps: O(1)."""
        for pane in (self.connections, self.listening):
            row = pane.table.rows.find(sock)
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
        if getattr(sock, "protocol", 6) != 6:  # a UDP / UNIX row: the keepalive pane and timeline are TCP's
            return
        try:
            keepalive = self.keepalive
            if keepalive.wants_selection(message.origin, message.by_user):
                keepalive.show_socket(sock, self.owner_of(sock), origin=message.origin, by_user=message.by_user)
        except Exception as exc:  # noqa: BLE001
            self._report_error(f"keepalive pane: {exc}")
        # The timeline follows what the user points at, not where a cursor lands after a refresh.
        if message.by_user and message.origin in ("connections", "listening"):
            self.lab.follow_socket(sock)

    @on(ColumnsRequested)
    def _choose_columns(self, message: ColumnsRequested) -> None:
        origin = message.origin
        pane = next((p for p in self.socket_lists() if p.id == origin), None)
        if pane is None:
            return
        title = f"Columns of {getattr(pane, 'TITLE', origin)} (top to bottom = left to right)"

        def chosen(choice: ColumnChoice | None) -> None:
            if choice is None:
                return
            pane.set_column_choice(choice)
            error = self.column_prefs.set(origin, choice)
            if error:
                self.notify(inert(error), title="columns", severity="warning", markup=False)

        self.push_screen(ColumnChooser(message.table, title), chosen)

    def on_socket_activated(self, message: SocketActivated) -> None:
        self.open_detail(message.socket)

    @on(ClosedActivated)
    def _closed_activated(self, message: ClosedActivated) -> None:
        self.push_screen(ClosedScreen(message.record))

    def open_detail(self, sock: Socket | None = None) -> None:
        sock = sock or self.selected
        if sock is None:
            self.notify("no socket selected", severity="warning")
            return
        if getattr(sock, "protocol", 6) != 6:
            self.notify("Detail is for TCP sockets (this row is UDP or UNIX)", severity="warning")
            return
        self.lab.follow_socket(sock)
        taken = self.snapshot.taken_at if self.snapshot is not None else None
        self.push_screen(DetailScreen(sock, self.owner_of(sock), self.history.for_socket(sock), taken,
                                      samples=self.lab.samples_for(sock)))

    def open_options(self, sock: Socket | None = None) -> None:
        """SO_LINGER / keepalive of a socket in the table: ours directly, another process's after confirming."""
        sock = sock or self.selected
        if sock is None:
            self.notify("no socket selected: pick one in Connections, Listening or Keepalive", severity="warning")
            return
        if getattr(sock, "protocol", 6) != 6:
            self.notify("socket options are for TCP sockets (this row is UDP or UNIX)", severity="warning")
            return
        self.push_screen(SocketOptionsScreen(sock, self.owner_of(sock)))

    # ------------------------------------------------------------------ kill one socket (k)
    def on_kill_requested(self, message: KillRequested) -> None:
        """``k`` on a row: confirm (naming the owner and both ends), then kill it off the UI thread."""
        message.stop()
        sock = message.socket
        if sock is None or not self.on_base_screen():
            if sock is None:
                self.notify("no socket selected: move the cursor to a row first", severity="warning")
            return
        netns = message.netns if message.netns is not None else self.netns

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.kill_socket(sock, netns)

        self.push_screen(KillScreen(sock, self.owner_of(sock), is_root=self.is_root), confirmed)

    @work(thread=True, group="kill-socket", exit_on_error=False)
    def kill_socket(self, sock: Socket, netns: str | None = None) -> None:
        """SOCK_DESTROY (blocking netlink round trip, maybe a namespace switch): a worker thread."""
        from sockmon.core.table.destroy import DestroyResult, destroy

        try:
            result = destroy(sock, netns)
        except Exception as exc:  # noqa: BLE001 - shown, the app keeps running
            result = DestroyResult(sock, False, None, str(exc))
        self.call_from_thread(self._killed, result)

    def _killed(self, result) -> None:
        from sockmon.tui.fmt import local_of, peer_of

        s = result.socket
        ends = f"{s.state_name} {local_of(s)} → {peer_of(s)}"
        self.last_kill = result
        if result.ok:
            self.notify(inert(f"killed {ends}"), title="kill", timeout=6, markup=False)
        elif result.gone:
            self.notify(inert(f"{ends}: {result.reason}"), title="kill", severity="warning", timeout=8, markup=False)
        else:
            self.notify(inert(f"not killed: {ends}: {result.reason}"), title="kill", severity="error", timeout=10,
                        markup=False)
        self.request_refresh()

    # ------------------------------------------------------------------ the lab panes' facts (one route each)
    @on(ClientConnecting)
    def _client_connecting(self, message: ClientConnecting) -> None:
        self.lab.client_connecting(message.generation)

    @on(LadderPacketsCaptured)
    def _ladder_packets(self, message: LadderPacketsCaptured) -> None:
        self.lab.ladder_packets(message.queue, message.generation)

    @on(LadderUnavailableSeen)
    def _ladder_unavailable(self, message: LadderUnavailableSeen) -> None:
        self.lab.ladder_unavailable(message.reason, message.generation)

    @on(ClientEndpointsKnown)
    def _client_endpoints_known(self, message: ClientEndpointsKnown) -> None:
        self.lab.client_endpoints(message.local, message.peer)

    @on(ClientFdClosed)
    def _client_fd_closed(self, message: ClientFdClosed) -> None:
        self.lab.client_fd_closed()

    @on(EngineEvent)
    def _engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        try:
            self.lab.engine_event(ev)
        except Exception as exc:  # noqa: BLE001
            self._report_error(f"timeline: {exc}")
        pane = self._lab_pane(message.origin)
        if ev.kind in (EventKind.FAILED, EventKind.ERROR) and not (pane is not None and pane.on_screen()):
            # the pane on screen shows it inline (a toast there covered its state line at 80x24)
            self.notify(inert(event_error_line(ev)), title=message.origin, severity="error", timeout=8,
                        markup=False)

    def _lab_pane(self, origin: str) -> LabPane | None:
        cls = {"client": ClientPane, "server": ServerPane}.get(origin)
        return self._one_pane(cls) if cls is not None else None

    @on(ScenarioSockets)
    def _scenario_sockets(self, message: ScenarioSockets) -> None:
        """A scenario step names connections: highlight their rows in the socket lists."""
        for pane in (self.listening, self.connections):
            pane.highlight_four_tuples(message.four_tuples)
        self.request_refresh()  # the lists catch up with the step at once

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """A click on the Client / Server tab enters the pane like its key does (Target gets the focus)."""
        tab = event.pane.id if event.pane is not None else None
        if tab in ("client", "server") and self.on_base_screen():
            self.call_after_refresh(self._focus_pane, tab)

    def action_focus_next(self) -> None:
        """Tab from the tab bar into the Client / Server tab enters it like its key (Target gets the focus)."""
        from textual.widgets import Tabs

        tab = self.query_one("#tabs", TabbedContent).active
        if isinstance(self.focused, Tabs) and tab in ("client", "server") and self.on_base_screen():
            lab = self._lab_pane(tab)
            if lab is not None:
                lab.focus_entry()
                return
        super().action_focus_next()

    # ------------------------------------------------------------------ actions
    def action_show_pane(self, name: str) -> None:
        tab = {"listening": "sockets", "connections": "sockets"}.get(name, name)
        if isinstance(self.screen, Screen) and self.screen is not self.screen_stack[0]:
            return  # a modal/detail screen is up
        if name == "connections" and self.process_view:
            self.set_process_view(False)
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active != tab:
            self.screen.set_focus(None)  # a field of the old tab keeps no focus (it would pull its tab back)
        tabs.active = tab
        self.call_after_refresh(self._focus_pane, name)

    def _focus_pane(self, name: str) -> None:
        if name == "sockets" and self.process_view:
            self.processes.focus_table()
        elif name in ("sockets", "connections"):
            self.connections.focus_table()
        elif name == "listening":
            self.listening.focus_table()
        elif name == "history":
            self.closed_pane.focus_table()
        elif name == "diagram":
            for pane in self.query(DiagramPane).results(DiagramPane):
                pane.focus_view()
        elif name == "keepalive":
            self.keepalive.focus_table()
            self.keepalive.show_cursor_row()
        elif name in ("client", "server"):
            lab = self._lab_pane(name)
            if lab is not None:
                lab.focus_entry()
        elif name == "scenarios":
            self.query_one(ScenariosPane).focus_list()
        else:
            pane = self.query_one(f"#{name}", TabPane)
            for widget in pane.query("*"):
                if widget.focusable:
                    widget.focus()
                    break

    def action_filter(self) -> None:
        """The filter line of the list on screen: Keepalive's timer list, Listening when it has the focus,
        else Connections (every socket list has one; the same language everywhere)."""
        if not self.on_base_screen():
            return
        tab = self.query_one("#tabs", TabbedContent).active
        if tab == "keepalive":
            self.call_after_refresh(self.keepalive.timers.action_focus_filter)
            return
        if tab == "diagram":
            for pane in self.query(DiagramPane).results(DiagramPane):
                self.call_after_refresh(pane.action_focus_filter)
            return
        self.set_process_view(False)
        pane = self.listening if self.listening.has_focus_within else self.connections
        self.action_show_pane("sockets")
        self.call_after_refresh(pane.action_focus_filter)

    # ------------------------------------------------------------------ process view
    def action_toggle_processes(self) -> None:
        if self.on_base_screen():
            self.set_process_view(not self.process_view)

    def set_process_view(self, on: bool) -> None:
        """Show the totals per process in the Connections pane's place (or the connections again). The
        collector totals them only while this view is shown; until its next tick they are totalled here
        once from the snapshot on screen."""
        if on == self.process_view:
            return
        self.process_view = on
        if self.collector is not None and hasattr(self.collector, "want_processes"):
            self.collector.want_processes(on)
        connections, processes = self.connections, self.processes
        connections.display = not on
        processes.display = on
        if on:
            if self._latest is not None and self._latest.snapshot is self.snapshot:
                self._show_processes(self._latest)
            elif self.snapshot is not None:
                self.processes.show_totals(process_totals(self.snapshot, connections.rates),
                                           connections.rates.seconds)
            tabs = self.query_one("#tabs", TabbedContent)
            if tabs.active != "sockets":
                self.screen.set_focus(None)
                tabs.active = "sockets"
            self.call_after_refresh(processes.focus_table)
        else:
            self.call_after_refresh(connections.focus_table)
        self.refresh_bindings()

    def on_process_activated(self, message: ProcessActivated) -> None:
        """Enter on a process: its connections, in the Connections pane (filtered by pid)."""
        if not message.pid:
            self.notify("no known owner: TIME_WAIT sockets, orphans, other users' without root", timeout=4)
            return
        self.set_process_view(False)
        self.connections.set_filter_text(f"pid:{message.pid}")

    def _show_processes(self, update: Update) -> None:
        totals = update.processes
        rates = update.rates
        if totals is None and update.snapshot is not None:  # wanted since this tick began
            totals = process_totals(update.snapshot, rates)
        self.processes.show_totals(totals, rates.seconds if rates is not None else None)

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

    def action_pick_netns(self) -> None:
        if self.on_base_screen():
            self.push_screen(NetnsScreen(self.view_netns, self.netns), callback=self._netns_picked)

    def _netns_picked(self, choice: NetnsChoice | None) -> None:
        if choice is not None:
            self.show_netns(choice.target, choice.label)

    def show_netns(self, target: str | None, label: str | None = None) -> None:
        """Show another namespace in the socket lists (None: ours, ALL_NETNS: every one). The collector
        collects it on its own thread (a new base: no row marks, no transitions across the switch);
        until its first snapshot arrives the lists keep the previous view."""
        if target == self.view_netns:
            return
        self.view_netns = target
        if target is None:  # ours: the status bar names it only when the lab lives elsewhere (--netns)
            label = None if self.netns is None else "own"
        elif label is None:
            label = "all namespaces" if target == ALL_NETNS else target
        self._view_label = label
        self._switching = True
        if self.collector is not None and hasattr(self.collector, "set_netns"):
            self.collector.set_netns(target)  # never blocks: the collector thread does the work
        self.status.show(netns=f"{label or 'own'} (switching…)")  # the lists keep the old view until then
        self.notify(inert(f"showing {label or 'own namespace'}…"), timeout=2, markup=False)  # names are untrusted

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_fleet(self) -> None:
        if self.on_base_screen():
            self.push_screen(FleetScreen(self.prometheus))

    def action_detail(self) -> None:
        self.open_detail()

    def action_socket_options(self) -> None:
        if self.on_base_screen():
            self.open_options()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        panes = [("Show Listening", "listening"), ("Show Connections", "connections"), ("Show Keepalive", "keepalive"),
                 ("Show Client", "client"), ("Show Server", "server"), ("Show Timeline", "timeline"),
                 ("Show History (closed connections)", "history")]
        for title, name in panes:
            yield SystemCommand(title, f"switch to the {name} pane", lambda n=name: self.action_show_pane(n))
        yield SystemCommand("Filter the list", "ss syntax (state, src/dst, sport/dport, and/or/not) or shorthand",
                            self.action_filter)
        yield SystemCommand("Process view", "connections and throughput per process, like nethogs (g)",
                            self.action_toggle_processes)
        yield SystemCommand("Pause / resume collection", "stop or restart refreshing (p)", self.action_toggle_pause)
        yield SystemCommand("Refresh now", "collect a snapshot immediately (r)", self.action_refresh_now)
        yield SystemCommand("Network namespace", "show every namespace, ours, a named one or a process's (N)",
                            self.action_pick_netns)
        yield SystemCommand("Socket types", "TCP → TCP+UDP → UDP → UNIX → all in the lists (u)",
                            self.action_cycle_socket_types)
        yield SystemCommand("Names / numbers", "host and service names instead of numbers, like ss -r (n)",
                            self.action_toggle_names)
        yield SystemCommand("Slower refresh", "increase the interval (+)", self.action_slower)
        yield SystemCommand("Faster refresh", "decrease the interval (-)", self.action_faster)
        yield SystemCommand("Socket detail", "every field of the selected socket (Enter)", self.action_detail)
        yield SystemCommand("Socket options", "change SO_LINGER / keepalive of the selected socket (o)",
                            self.open_options)
        yield SystemCommand("Kill socket", "kill the selected socket after confirmation: SOCK_DESTROY (k)",
                            self._kill_selected)
        for action, title in (("sort_next", "Sort by next column"), ("sort_prev", "Sort by previous column"),
                              ("sort_reverse", "Reverse the sort order")):
            keys = ", ".join(b.key_display or b.key for b in VirtualTable.BINDINGS if b.action == action)
            yield SystemCommand(title, f"in the focused socket list ({keys})",
                                lambda a=action: self._sort_focused(a))
        yield SystemCommand("Fleet", "every host's sockets from Prometheus (F; sockmon --prometheus URL)",
                            self.action_fleet)
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

    def _kill_selected(self) -> None:
        self.post_message(KillRequested(self.selected, origin="palette"))

    async def _run_pane_action(self, pane, action: str, tab: str) -> None:
        self.action_show_pane(tab)
        await self.run_action(action, pane)

    def _sort_focused(self, action: str = "sort_next") -> None:
        target = self.focused if isinstance(self.focused, VirtualTable) else self.connections.table
        getattr(target, f"action_{action}")()


def run_app(interval: float = 1.0, netns: str | None = None, prometheus: str | None = None) -> int:
    app = SockmonApp(interval=interval, netns=netns, handle_signals=True, prometheus=prometheus,
                     columns_file=default_config_path())
    # Until the app's event loop takes the signals over (on mount), remember one and exit at mount.
    previous = {}
    for sig in EXIT_SIGNALS:
        previous[sig] = signal.signal(sig, lambda signum, _frame: setattr(app, "exit_signal", signum))
    try:
        result = app.run()
    finally:
        app.shutdown()  # idempotent: whatever ended the run, no tracefs instance and no engine outlives it
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return int(result or app.return_code or 0)
