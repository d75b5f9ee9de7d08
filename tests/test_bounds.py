"""Bounded by design: the real app (Pilot), its real collector (the tracepoint, as root) and thousands of
loopback connections opening and closing. Every structure fed by events stays within its cap
(ARCHITECTURE.md, "Bounds"), and no container anywhere in the app's widgets grows with the number of
transitions seen (the old Timeline kept one key per transition host-wide, never pruned)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque

import pytest
from sockmon.core.lab import timeline as tl
from sockmon.core.table import closed as closed_module
from sockmon.core.table import statemachine as sm
from sockmon.tui import app as app_module
from sockmon.tui.app import SockmonApp
from sockmon.tui.widgets import rows as rows_module
from test_tui_fixtures import sync, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="the tracepoint needs root")]

# One child process: a listener on 127.0.0.1:0, then connect + accept + close both ends with SO_LINGER 0
# (RST: no TIME_WAIT left behind), as fast as it can, COUNT times; prints how many it made.
CHURN = r"""
import socket, struct, sys
count = int(sys.argv[1])
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(512)
addr = lst.getsockname()
linger = struct.pack("ii", 1, 0)
made = 0
for i in range(count):
    c = socket.create_connection(addr)
    s, _ = lst.accept()
    for x in (c, s):
        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        x.close()
    made += 1
print(made)
"""

CONNECTIONS = 8000
# Containers whose size follows the live socket table, not the events: the table's rows and the
# collector's per-socket maps. Everything else in the app and its widgets stays below GENERIC_CAP.
GENERIC_CAP = 5000


def containers(obj):
    """(name, len) of every container attribute of ``obj`` (dict, set, list, deque)."""
    try:
        attrs = vars(obj)
    except TypeError:
        return
    for name, value in attrs.items():
        if isinstance(value, (dict, set, frozenset, list, deque)):
            yield name, len(value)


@sync
async def test_churn_keeps_every_event_fed_structure_within_its_cap():
    app = SockmonApp(interval=0.25, is_root=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.collector is not None and app.snapshot is not None, timeout=20,
                       what="the first snapshot")
        assert app.collector.transition_source == "tracepoint"
        # the user follows a socket in the table, as in the reviews' runs
        app.connections.table.focus()
        await pilot.press("down")
        procs = [subprocess.Popen([sys.executable, "-c", CHURN, str(CONNECTIONS // 2)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        peak: dict[str, int] = {}
        try:
            deadline = time.monotonic() + 120
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                await pilot.pause(0.2)
                model = app.lab.model
                for name, n in model.sizes().items():
                    peak[f"timeline.{name}"] = max(peak.get(f"timeline.{name}", 0), n)
                peak["pending"] = max(peak.get("pending", 0), len(app._pending_transitions))
            made = sum(int(p.communicate(timeout=30)[0]) for p in procs)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert made == CONNECTIONS
        await pilot.pause(1.0)  # the last transitions reach the app
        # (on a loaded machine the collector may still be draining them; closes drained after their tick's
        # snapshot wait for the next snapshot in the closed-connection history)
        await wait_for(pilot, lambda: app.history.total >= 3 * CONNECTIONS and app.closed.total > 2 * CONNECTIONS * 0.9,
                       timeout=30, what="the churn's transitions and closes")
        seen = app.history.total
        assert seen >= 3 * CONNECTIONS, f"the tracepoint saw the churn ({seen} transitions)"

        # every capped structure within its cap
        model = app.lab.model
        assert peak["timeline.lines"] <= tl.MAX_LINES
        assert peak["timeline.events"] <= tl.MAX_EVENTS
        assert peak["timeline.transitions"] <= tl.MAX_TRANSITIONS
        assert model.sizes()["transitions"] == tl.MAX_TRANSITIONS, "the replay window is full, and no more"
        assert peak["pending"] <= app_module.MAX_PENDING_TRANSITIONS
        hist = app.history
        assert len(hist) <= hist.max_sockets
        assert all(len(q) <= hist.per_socket for q in hist._by_tuple.values())
        for pane in (app.listening, app.connections, app.keepalive.timers):
            sizes = pane.table.rows.sizes()
            assert sizes["new"] <= rows_module.MAX_MARKS and sizes["gone"] <= rows_module.MAX_MARKS
        collector = app.collector
        assert len(collector._pending) <= 200_000
        closed = app.closed  # the closed-connection history: 16,000 closed ends went through it
        assert closed.total > closed_module.MAX_CLOSED and len(closed) == closed_module.MAX_CLOSED
        assert len(closed._waiting) <= closed.max_waiting and len(closed._departed) <= closed.max_waiting
        assert len(closed._owners) <= closed.max_owners
        assert app.closed_pane.table.row_count == closed_module.MAX_CLOSED
        diagram = app.diagram  # the state diagram: ≤ 12 × 12 edges × window buckets, the path capped
        assert diagram.transitions_seen >= 3 * CONNECTIONS
        assert len(diagram._rates) <= sm.MAX_EDGES and diagram.bucket_cells() <= sm.MAX_EDGES * diagram.window
        assert len(diagram.path) <= sm.MAX_PATH

        # and nothing else grows with the events: no container in the app, its widgets or our models
        # comes near the number of transitions seen (the old TimelinePane._seen held one per transition)
        live = len(app.snapshot.sockets)
        objects = [app, model, app.diagram, *app.screen_stack[0].query("*")]  # the history: its own caps, above
        objects += [w.rows for w in app.screen_stack[0].query("VirtualTable")]
        for obj in objects:
            for name, n in containers(obj):
                assert n <= max(GENERIC_CAP, 2 * live + 100), (
                    f"{type(obj).__name__}.{name} holds {n} items after {seen} transitions")
