"""How an app that hosts the lab panes routes their facts: one `ConnectionTimeline` model, fed once.

The panes never call each other. The app (SockmonApp, or the tests' LabHost) owns one `LabWiring`, and
its ``@on(...)`` handlers call it for each fact the panes post (tui/messages.py) and for each collector
update:

    ClientConnecting      → model.follow_client_connecting(); ladder.reset(generation)
    LadderPacketsCaptured → ladder.add(queue.drain())    (the client's packets, in batches)
    LadderUnavailableSeen → ladder.unavailable(reason)   (no capture: the one line why)
    ClientEndpointsKnown  → model.client_endpoints(local, peer)
    ClientFdClosed        → model.client_fd_closed() (+ a collection now: the TIME_WAIT row shows at once)
    EngineEvent           → model.add_event(ev)           (the one route: pane → bubble → app → model)
    update(snapshot, trs, rates) → model.add_transitions(trs); model.observe(snapshot, rates)
    follow_socket(sock)   → model.follow_socket(sock)     (a row picked in a table)

After each, the Timeline view redraws what changed and the Client pane is told the kernel's state of
its connection (``kernel_state_seen``), whatever the Timeline follows.
"""

from __future__ import annotations

from collections.abc import Iterable

from sockmon.core.lab.ladder import LadderModel
from sockmon.core.lab.timeline import ConnectionTimeline
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.series import Rates, SampleRing
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.timeline import TimelinePane


class LabWiring:
    def __init__(self, app, model: ConnectionTimeline | None = None) -> None:
        self.app = app
        self.model = model if model is not None else ConnectionTimeline()
        self.ladder = LadderModel()  # the packet ladder of the client's newest connection
        self._views: dict[type, tuple[object, list]] = {}  # kind → (screen, its panes): no DOM walk per tick

    # ------------------------------------------------------------------ facts from the panes
    def client_connecting(self, generation: int | None = None) -> None:
        self.model.follow_client_connecting()
        self.ladder.reset(generation)
        self.changed()

    def ladder_packets(self, queue, generation: int | None = None) -> None:
        if self.ladder.add(queue.drain(), generation):
            self.ladder_changed()

    def ladder_unavailable(self, reason: str, generation: int | None = None) -> None:
        self.ladder.unavailable(reason, generation)
        self.ladder_changed()

    def client_endpoints(self, local, peer) -> None:
        self.model.client_endpoints(local, peer)
        self.changed()

    def client_fd_closed(self) -> None:
        self.model.client_fd_closed()
        self.changed()

    def engine_event(self, event) -> None:
        self.model.add_event(event)
        self.changed()

    def follow_socket(self, sock: Socket | None) -> None:
        self.model.follow_socket(sock)
        self.changed(client=False)

    # ------------------------------------------------------------------ the collector
    def update(self, snapshot: Snapshot | None, transitions: Iterable[Transition] = (),
               rates: Rates | None = None) -> None:
        if transitions:
            self.model.add_transitions(transitions)
        if snapshot is not None:
            self.model.observe(snapshot, rates)
        self.changed()

    def samples_for(self, sock: Socket | None) -> SampleRing | None:
        """The followed connection's last refreshes (sparklines), when ``sock`` is what the model follows."""
        return self.model.samples_for(sock)

    # ------------------------------------------------------------------ views
    def _base(self):
        stack = self.app.screen_stack
        return stack[0] if stack else None

    def _panes(self, base, kind: type) -> list:
        """The panes of ``kind`` on the base screen, found once (a query walks the whole DOM, and this
        runs every refresh) and found again when one has left the DOM or the screen changed."""
        cached = self._views.get(kind)
        if cached is not None and cached[0] is base and all(p.is_attached for p in cached[1]):
            return cached[1]
        found = list(base.query(kind))
        if found:
            self._views[kind] = (base, found)
        return found

    def ladder_changed(self) -> None:
        base = self._base()
        if base is None:
            return
        for view in self._panes(base, TimelinePane):
            if view.ladder is self.ladder:
                view.refresh_ladder()

    def changed(self, *, client: bool = True) -> None:
        base = self._base()
        if base is None:
            return
        for view in self._panes(base, TimelinePane):
            if view.model is self.model:
                view.refresh_view()
        if client:
            m = self.model
            for pane in self._panes(base, ClientPane):
                pane.kernel_state_seen(m.client_state, gone=m.client_gone, closed=m.client_closed,
                                       failed=m.client_failed)
