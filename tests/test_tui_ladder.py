"""The packet ladder in the Timeline pane: the client's real connection captured live (root), routed
through the app (LabWiring) off the UI thread, toggled with ``L``; and an SVG snapshot with fixed packets."""

from __future__ import annotations

import os

import pytest
from sockmon.core.lab.ladder import LadderModel, LadderPacket, PacketQueue
from sockmon.tui.lab.timeline import TimelinePane
from test_tui_fixtures import LabHost, connect_client, echo_server, run, wait_for  # noqa: F401
from textual.widgets import Input

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET capture needs root")


@root_only
def test_timeline_shows_the_client_ladder_live(echo_server):  # noqa: F811
    async def scenario():
        app = LabHost(collect=False)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await connect_client(app, pilot, echo_server.address)
            timeline = app.query_one(TimelinePane)
            assert timeline.ladder is app.lab.ladder
            await wait_for(pilot, lambda: len(app.lab.ladder.packets) >= 3, what="the handshake captured")
            field = pane.query_one("#client-send-text", Input)
            field.value = "hello"
            field.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: any(p.len == 7 and p.dir == "s>c" for p in app.lab.ladder.packets),
                           what="the echo captured")
            pane.focus()
            await pilot.press("g")  # graceful close: both FINs
            await wait_for(pilot, lambda: sum("FIN" in p.flags for p in app.lab.ladder.packets) == 2,
                           what="both FINs")
            app.query_one("TabbedContent").active = "tab-timeline"
            await pilot.pause()
            timeline.focus()
            assert not timeline.ladder_shown
            await pilot.press("L")
            assert timeline.ladder_shown
            await pilot.pause()
            lines = timeline.ladder_lines()
            assert "client ──SYN seq=0" in lines[0] and "client ◀──SYN,ACK seq=0 ack=1" in lines[1]
            assert any("len=7" in x and x.strip().split("  ", 1)[1].startswith("client ──") for x in lines)
            log = timeline.query_one("#timeline-ladder")
            assert len(log.lines) == len(lines)  # every packet drawn once
            drawn = "\n".join(strip.text for strip in log.lines)
            assert "──SYN seq=0" in drawn
            await pilot.press("L")
            assert not timeline.ladder_shown

    run(scenario())


def test_ladder_model_ignores_an_old_connect_and_drains_in_batches():
    model = LadderModel(cap=3)
    model.reset(generation=2)
    q = PacketQueue(cap=10)
    assert q.put(pkt(1)) is True and q.put(pkt(2)) is False  # one wake-up per batch
    assert model.add(q.drain(), generation=1) == 0  # a replaced connect's packets
    q.put(pkt(1))
    q.put(pkt(2))
    assert model.add(q.drain(), generation=2) == 2
    for n in range(3, 8):
        model.add([pkt(n)], 2)
    assert [p.n for p in model.packets] == [5, 6, 7] and model.evicted == 4
    model.unavailable("packet ladder empty: no root", generation=1)
    assert model.reason is None
    model.reset(3)
    assert model.packets == [] and model.evicted == 0


def test_packet_queue_is_bounded():
    q = PacketQueue(cap=100)
    for n in range(1, 1001):
        q.put(pkt(n))
    got = q.drain()
    assert len(got) == 100 and q.dropped == 900 and got[0].n == 901


def pkt(n, d="c>s", flags=("ACK",), seq=1, ack=1, length=0, t=0.0, opts=()):
    return LadderPacket(n, t, d, flags, seq, ack, 65536, 7, length, opts)


FIXED = [
    pkt(1, "c>s", ("SYN",), 0, None, t=0.0, opts=("mss 65495", "sackOK", "ts", "ws 7")),
    pkt(2, "s>c", ("SYN", "ACK"), 0, 1, t=0.021, opts=("mss 65495", "sackOK", "ts", "ws 7")),
    pkt(3, "c>s", ("ACK",), 1, 1, t=0.034, opts=("ts",)),
    pkt(4, "c>s", ("PSH", "ACK"), 1, 1, 5, t=1.502, opts=("ts",)),
    pkt(5, "s>c", ("PSH", "ACK"), 1, 6, 5, t=1.561, opts=("ts",)),
    pkt(6, "c>s", ("FIN", "ACK"), 6, 6, t=3.017, opts=("ts",)),
    pkt(7, "s>c", ("FIN", "ACK"), 6, 7, t=3.058, opts=("ts",)),
    pkt(8, "c>s", ("ACK",), 7, 7, t=3.066, opts=("ts",)),
    pkt(9, "c>s", ("RST", "ACK"), 7, 7, t=4.0),
]


async def show_fixed_ladder(pilot) -> None:
    app = pilot.app
    app.query_one("TabbedContent").active = "tab-timeline"
    app.lab.client_connecting(1)
    app.lab.client_endpoints(("127.0.0.1", 40000), ("127.0.0.1", 8080))
    q = PacketQueue()
    for p in FIXED:
        q.put(p)
    app.lab.ladder_packets(q, 1)
    timeline = app.query_one(TimelinePane)
    timeline.focus()
    await pilot.press("L")
    await pilot.pause()


def test_snapshot_timeline_ladder(snap_compare):
    assert snap_compare(LabHost("tab-timeline", collect=False), terminal_size=(100, 32),
                        run_before=show_fixed_ladder)


def test_timeline_says_why_the_ladder_is_empty():
    reason = "packet ladder empty: socket(AF_PACKET) = EPERM: capturing packets needs root (CAP_NET_RAW)"

    async def scenario():
        app = LabHost("tab-timeline", collect=False)
        async with app.run_test(size=(120, 30)) as pilot:
            app.lab.client_connecting(4)
            app.lab.ladder_unavailable(reason, 4)
            timeline = app.query_one(TimelinePane)
            timeline.focus()
            await pilot.press("L")
            await pilot.pause()
            assert timeline.ladder_shown and reason in timeline.ladder_lines()[0]
            header = str(timeline.query_one("#timeline-ladder-header").render())
            assert "EPERM" in header
            app.lab.client_connecting(5)  # a new connect: the old reason is gone
            assert timeline.ladder.reason is None

    run(scenario())
