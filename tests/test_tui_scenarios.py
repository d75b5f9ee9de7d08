"""The Scenarios tab: a real `time-wait` run in the app (off the UI thread, narration as steps arrive,
the result, the step's rows highlighted in Connections), a stopped run cleaned up by the app's shutdown,
and an SVG snapshot of the pane mid-scenario from a fixed step stream.

Update the snapshot after an intended visual change:
``pytest tests/test_tui_scenarios.py -k snapshot --snapshot-update``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess

import msgspec
import pytest
from sockmon.core.lab import scenarios as registry
from sockmon.core.lab.ladder import ConnPacket
from sockmon.core.lab.scenarios.base import Check, Endpoint4, Result, Scenario, Step
from sockmon.core.table.snapshot import take_snapshot
from sockmon.core.table.tracepoint import list_instances, tracing_available
from sockmon.tui.app import SockmonApp
from sockmon.tui.scenarios.pane import ScenariosPane
from sockmon.tui.theme import HIGHLIGHT_STYLE
from test_tui_fixtures import run, wait_for
from textual.app import App, ComposeResult
from textual.widgets import RichLog

pytestmark = pytest.mark.timeout(90)
ROOT_OK, WHY = tracing_available()
needs_root = pytest.mark.skipif(not ROOT_OK or os.geteuid() != 0, reason=f"needs root and tracefs: {WHY}")


def log_text(pane: ScenariosPane) -> str:
    return "\n".join(strip.text for strip in pane.query_one("#scenario-log", RichLog).lines)


def my_instances() -> list[str]:
    return [n for n in list_instances() if n.startswith(f"sockmon-{os.getpid()}-")]


@needs_root
@pytest.mark.root
def test_time_wait_runs_for_real_in_the_app_and_its_rows_are_highlighted():
    async def body():
        app = SockmonApp(collector_factory=None, is_root=True)
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.press("7")
            await pilot.pause()
            pane = app.query_one(ScenariosPane)
            await pilot.press("enter")  # the cursor is on the first scenario: time-wait
            assert pane.running == "time-wait"
            result = await wait_for(pilot, lambda: pane.last_result, timeout=30, what="the scenario's result")
            assert result.ok, result
            assert pane.steps_shown == 5
            text = log_text(pane)
            for promised in ("FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "timer counts down"):
                assert promised in text
            # the run's packet ladder below the narration: the handshake and both FINs
            assert result.observed["packets"] == len(result.ladder) >= 9
            assert f"packet ladder: {len(result.ladder)} packets" in text
            for rung in ("──SYN seq=0", "◀──SYN,ACK seq=0 ack=1", "──FIN,ACK seq=6 ack=6", "◀──FIN,ACK seq=6 ack=7"):
                assert rung in text, text
            assert "✗" not in text
            # the last step names the client's 4-tuple, now TIME_WAIT: the app highlights its row
            port = result.observed["port"]
            snap = take_snapshot(port=port)
            real = [s for s in snap.sockets if s.state_name == "TIME_WAIT" and s.dport == port]
            assert len(real) == 1
            other = msgspec.structs.replace(real[0], sport=1, cookie=1)  # a row the step does not name
            app.inject_snapshot(dataclasses.replace(snap, sockets=(*snap.sockets, other)))
            await pilot.pause()
            table = app.connections.table
            assert table.highlight is not None
            drawn = {}
            for i, key in enumerate(table._view):
                row = table.get_row(key)
                if row.sport in (1, real[0].sport):
                    drawn[row.sport] = i
            assert set(drawn) == {1, real[0].sport}
            table.cursor_index = drawn[1]  # the cursor's own colour would hide the highlight

            def highlighted(i):
                return any(seg.style is not None and seg.style.bgcolor == HIGHLIGHT_STYLE.bgcolor
                           for seg in table._row_strip(i))
            assert highlighted(drawn[real[0].sport]) and not highlighted(drawn[1])
            assert my_instances() == []  # the scenario's tracefs instance is gone
            await pilot.press("enter")  # and it can run again
            await wait_for(pilot, lambda: pane.running is None and pane.steps_shown == 5, timeout=30,
                           what="the second run")
            assert pane.last_result.ok and pane.last_result is not result

    run(body())


@needs_root
@pytest.mark.root
def test_quitting_mid_scenario_removes_what_it_made(monkeypatch):
    made: dict = {}

    def hang(ctx):
        made["ns"] = ctx.netns()
        lst = ctx.listener()
        made["port"] = lst.getsockname()[1]
        ctx.watch_port(made["port"])
        yield ctx.step("lab", "made a namespace, a listener, a tracefs instance")
        ctx.sleep(60)

    monkeypatch.setitem(registry._REGISTRY, "hang", Scenario(name="hang", summary="waits", run=hang))

    async def body():
        app = SockmonApp(collector_factory=None, is_root=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("7")
            await pilot.pause()
            pane = app.query_one(ScenariosPane)
            pane.run_scenario("hang")
            await wait_for(pilot, lambda: pane.steps_shown == 1, timeout=15, what="the first step")
            assert made["ns"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            assert my_instances()
            await pilot.press("q")  # shutdown() stops the scenario and waits for its cleanup
        assert made["ns"] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert my_instances() == []
        assert not [s for s in take_snapshot(port=made["port"]).sockets if s.sport == made["port"]]

    run(body())


# ------------------------------------------------------------------------------ snapshot (fixed steps)
C = ("127.0.0.1", 40000, "127.0.0.1", 8080)
S = ("127.0.0.1", 8080, "127.0.0.1", 40000)


def ck(what, observed, source="table", ok=True, expected=None):
    return Check(what=what, ok=ok, expected=expected or observed, observed=observed, source=source)


FAKE_STEPS = [
    Step("time-wait", 1, "client", "connect(127.0.0.1:8080) → SYN, SYN-ACK, ACK; server: accept() returns the "
         "connection", "the three-way handshake completes in the kernel before accept()",
         (Endpoint4(*C), Endpoint4(*S)), (ck("client is ESTABLISHED", "ESTABLISHED"),)),
    Step("time-wait", 2, "client", "close() → kernel sends FIN; client now FIN_WAIT2, server CLOSE_WAIT",
         "a FIN only says 'I will send no more'", (Endpoint4(*C), Endpoint4(*S)),
         (ck("client went ESTABLISHED → FIN_WAIT1 → FIN_WAIT2", "ESTABLISHED → FIN_WAIT1 → FIN_WAIT2",
             "tracepoint"), ck("server is CLOSE_WAIT", "CLOSE_WAIT"))),
    Step("time-wait", 3, "server", "close() → FIN: server LAST_ACK → gone; client TIME_WAIT\x1b[31m", "",
         (Endpoint4(*C),), (ck("client ends in TIME_WAIT", "FIN_WAIT2", ok=False, expected="TIME_WAIT"),)),
]


class ScenariosHost(App):
    def compose(self) -> ComposeResult:
        yield ScenariosPane()


async def fill(pilot) -> None:
    pane = pilot.app.query_one(ScenariosPane)
    pane.show_start("time-wait")
    for step in FAKE_STEPS:
        pane.show_step(step)
    pane.focus_list()
    await pilot.pause()


def test_snapshot_scenarios_pane_mid_scenario(snap_compare):
    assert snap_compare(ScenariosHost(), terminal_size=(100, 30), run_before=fill)


FAKE_LADDER = tuple(
    ConnPacket(n, t, d, f, seq, ack, 65536, 7, ln, (), client="127.0.0.1:40000", server="127.0.0.1:8080")
    for n, t, d, f, seq, ack, ln in [
        (1, 0.0, "c>s", ("SYN",), 0, None, 0), (2, 0.021, "s>c", ("SYN", "ACK"), 0, 1, 0),
        (3, 0.034, "c>s", ("ACK",), 1, 1, 0), (4, 2.5, "c>s", ("PSH", "ACK"), 1, 1, 5),
        (5, 2.61, "s>c", ("PSH", "ACK"), 1, 6, 5), (6, 3.1, "c>s", ("FIN", "ACK"), 6, 6, 0),
        (7, 40.2, "s>c", ("FIN", "ACK"), 6, 7, 0), (8, 40.23, "c>s", ("ACK",), 7, 7, 0)])


async def fill_with_result(pilot) -> None:
    await fill(pilot)
    pane = pilot.app.query_one(ScenariosPane)
    pane.show_result(Result("time-wait", False, {"port": 8080, "packets": len(FAKE_LADDER)},
                            failed=("step 3: client ends in TIME_WAIT",), ladder=FAKE_LADDER))
    await pilot.pause()


def test_snapshot_scenarios_pane_with_the_ladder(snap_compare):
    assert snap_compare(ScenariosHost(), terminal_size=(100, 40), run_before=fill_with_result)


def test_ladder_section_is_capped_and_the_empty_ladder_says_why():
    from sockmon.tui.scenarios.pane import MAX_LADDER_LINES, ladder_texts

    many = tuple(msgspec.structs.replace(FAKE_LADDER[3], n=i) for i in range(1, MAX_LADDER_LINES + 301))
    out = ladder_texts(Result("short-writes", True, {}, ladder=many))
    assert len(out) == MAX_LADDER_LINES + 2
    assert out[0].plain == f"── packet ladder: {len(many)} packets, client 127.0.0.1:40000 ⇄ server 127.0.0.1:8080 ──"
    assert out[-1].plain.startswith("… 300 more packets")
    why = "packet ladder empty: socket(AF_PACKET) = EPERM\x1b[31m"
    out = ladder_texts(Result("time-wait", True, {}, ladder_note=why))
    assert [t.plain for t in out] == ["packet ladder empty: socket(AF_PACKET) = EPERM\\x1b[31m"]


# ------------------------------------------------------------------------------ bounds
def test_narration_log_is_capped():
    from sockmon.tui.scenarios.pane import MAX_LINES

    async def body():
        app = ScenariosHost()
        async with app.run_test(size=(100, 30)) as pilot:
            pane = app.query_one(ScenariosPane)
            for i in range(MAX_LINES + 300):
                pane.show_step(Step("time-wait", i, "client", f"step {i}", sockets=(Endpoint4(*C),)))
            await pilot.pause()
            lines = pane.query_one("#scenario-log", RichLog).lines
            assert len(lines) == MAX_LINES
            assert lines[-1].text.startswith(f"[{MAX_LINES + 299}]")  # the oldest went first

    run(body())
