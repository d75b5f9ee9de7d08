"""Regenerate screenshots/*.svg from the real app with real loopback sockets.

As root the script re-runs itself inside a throw-away network namespace (removed at the end), so the
pictures show only the sockets it opens: a listener with unaccepted clients in its accept queue, v6
connections with keepalive timers, a stalled reader (Recv-Q / Send-Q), FIN_WAIT2 ↔ CLOSE_WAIT,
TIME_WAIT, and the built-in server and client driven through their panes. The app runs headless with
its real collector; every SVG is Textual's own screenshot of one pane.

    sudo python3 tools/screenshots.py [--out screenshots] [--size 160x45] [--no-netns]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from contextlib import ExitStack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def keepalive(sock: socket.socket, idle: int = 60, intvl: int = 10, cnt: int = 3) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)


def open_scene(stack: ExitStack) -> dict:
    """Real sockets in many states; everything is closed when the stack unwinds."""
    def keep(s: socket.socket) -> socket.socket:
        stack.callback(s.close)
        return s

    scene: dict = {}
    # 1. a listener whose accept queue fills: 3 clients connected, never accepted
    web = keep(socket.socket())
    web.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    web.bind(("127.0.0.1", 8080))
    web.listen(8)
    for _ in range(3):
        keep(socket.create_connection(("127.0.0.1", 8080)))
    # 2. an IPv6 service with accepted connections
    db = keep(socket.socket(socket.AF_INET6))
    db.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    db.bind(("::1", 5432))
    db.listen(128)

    def pair(family=socket.AF_INET6, addr=("::1", 5432), listener=db):
        c = keep(socket.socket(family))
        c.connect(addr)
        s, _ = listener.accept()
        keep(s)
        return c, s

    # keepalive on both ends: keepalive timers counting down
    c, s = pair()
    keepalive(c)
    keepalive(s, 30, 5, 4)
    scene["keepalive"] = c.getsockname()[1]
    # a stalled reader: the server never reads, the client's data piles up in both queues
    c, s = pair()
    c.setblocking(False)
    try:
        while True:
            c.send(b"x" * 65536)
    except BlockingIOError:
        pass
    scene["stalled"] = c.getsockname()[1]
    # the client closes, the server does not: FIN_WAIT2 on one side, CLOSE_WAIT on the other
    c, s = pair()
    c.shutdown(socket.SHUT_WR)
    scene["close_wait"] = s.getpeername()[1]
    # both close, client first: TIME_WAIT
    api = keep(socket.socket())
    api.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    api.bind(("127.0.0.1", 3000))
    api.listen(16)
    for _ in range(2):
        c = socket.create_connection(("127.0.0.1", 3000))
        s, _ = api.accept()
        c.close()
        s.recv(1)
        s.close()
    # a plain established pair with some traffic
    c = keep(socket.create_connection(("127.0.0.1", 3000)))
    s, _ = api.accept()
    keep(s)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    s.recv(100)
    s.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
    c.recv(100)
    scene["plain"] = c.getsockname()[1]
    return scene


async def shoot(out: str, size: tuple[int, int]) -> list[str]:
    from sockmon.tui.app import SockmonApp
    from sockmon.tui.screens.detail import DetailScreen

    saved: list[str] = []
    with ExitStack() as stack:
        scene = open_scene(stack)
        app = SockmonApp(interval=0.5)
        async with app.run_test(size=size) as pilot:

            async def until(cond, timeout=10.0) -> bool:
                loop = asyncio.get_running_loop()
                end = loop.time() + timeout
                while loop.time() < end:
                    if cond():
                        return True
                    await pilot.pause(0.1)
                return False

            def save(name: str) -> None:
                path = app.save_screenshot(f"{name}.svg", out)
                saved.append(path)

            def rows():
                return app.connections.table.visible_rows()

            await until(lambda: any(s.sport == scene["keepalive"] for s in rows()))

            # lab panes, driven with their keys: the built-in server in echo mode, the built-in client
            # connected to it, a line sent and echoed, options toggled and read back from the kernel
            from sockmon.tui.lab.client import ClientPane
            from sockmon.tui.lab.server import ServerPane

            server = app.query_one(ServerPane)
            client = app.query_one(ClientPane)
            await pilot.press("4")
            server.query_one("#server-port").value = "9000"
            server.focus()
            await pilot.press("s")
            if not await until(lambda: server.address is not None):
                raise SystemExit(f"the built-in server did not start: {server.last_error}")
            await pilot.press("3")
            client.query_one("#client-target").value = "127.0.0.1:9000"
            client.focus()
            await pilot.press("o")
            if not await until(lambda: client.state == "ESTABLISHED" and client.options is not None):
                raise SystemExit(f"the built-in client did not connect: {client.last_error}")
            await pilot.press("escape", "i", *"hello, sockmon", "enter", "escape")  # i: the send box, whatever has focus
            await until(lambda: client.bytes_in > 0)
            await pilot.press("K")
            await until(lambda: client.options.keepalive.enabled)
            await pilot.press("n")
            await until(lambda: client.options.nodelay)
            await pilot.press("L")
            await until(lambda: client.options.linger.enabled)
            await pilot.press("L")  # off → 0 → N seconds
            await until(lambda: client.options.linger.seconds > 0)
            # the server side of that connection: keepalive set on the selected client, read back
            await pilot.press("4")
            await until(lambda: server.selected_client_id() is not None)
            server.query_one("#server-set-keepalive").press()
            await until(lambda: any("ka 60/10/3" in o for o in server._options.values()))
            app.request_refresh()
            await until(lambda: any(s.sport == 9000 and s.state == 1 for s in rows()))
            await pilot.pause(1.2)  # the server pane polls its clients (and their options) every second

            await pilot.press("1")
            await pilot.pause(0.5)
            save("monitor")
            await pilot.press("slash", *"v6", "enter")
            await pilot.pause(0.3)
            save("connections-filtered")
            app.connections.query_one("Input").value = ""
            await pilot.pause(0.3)

            # keepalive pane with the keepalive socket selected
            await pilot.press("2")
            await pilot.pause(0.3)
            ka = app.keepalive.timers.table
            target = next((s for s in ka.visible_rows() if s.sport == scene["keepalive"]), None)
            if target is not None:
                ka.focus()
                ka.move_cursor_to_key(ka.key_fn(target))
            await until(lambda: app.keepalive.keepalive is not None)
            await pilot.pause(0.5)
            save("keepalive")

            # detail of the stalled connection
            await pilot.press("1")
            await pilot.pause(0.3)
            stalled = next((s for s in rows() if s.sport == scene["stalled"]), None)
            if stalled is not None:
                app.open_detail(stalled)
                await pilot.pause(0.5)
                if isinstance(app.screen, DetailScreen):
                    save("detail")
                    await pilot.press("escape")
                    await pilot.pause(0.2)

            # the client connected with its options read back, the server with that client
            for key, name in (("3", "client"), ("4", "server")):
                await pilot.press(key)
                await pilot.pause(0.5)
                save(name)

            # graceful close: the timeline follows the 4-tuple into TIME_WAIT after the fd is gone
            timeline = app.timeline
            if timeline is not None:
                timeline.action_follow_client()  # the built-in client's life, not the last detail
            await pilot.press("3")
            client.focus()
            await pilot.press("g")
            await until(lambda: client.fd_closed)
            await until(lambda: timeline is not None and "TIME_WAIT" in "\n".join(timeline.plain_lines()))
            await pilot.press("5")
            await pilot.pause(0.5)
            save("timeline")
            await pilot.press("1")
            await pilot.press("question_mark")
            await pilot.pause(0.3)
            save("help")
            await pilot.press("escape")

            # a guided scenario run for real: time-wait, every step checked against the kernel
            from sockmon.tui.scenarios.pane import ScenariosPane

            await pilot.press("7")
            await pilot.pause(0.3)
            scenarios = app.query_one(ScenariosPane)
            await pilot.press("enter")
            await until(lambda: scenarios.last_result is not None, timeout=30)
            await pilot.pause(0.3)
            save("scenarios")
    return saved


async def shoot_diagram(out: str, size: tuple[int, int] = (200, 60)) -> list[str]:
    """The Diagram pane at 200×60 under steady loopback churn (graceful closes, every fifth one a linger-0
    abort), following one connection from ESTABLISHED through its close."""
    import struct
    import threading
    import time

    from sockmon.core.states import CLOSE, FIN_WAIT2
    from sockmon.tui.app import SockmonApp

    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    port = lst.getsockname()[1]
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            c = socket.create_connection(("127.0.0.1", port))
            a, _ = lst.accept()
            if i % 5 == 4:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            try:
                a.recv(1)
            except ConnectionResetError:
                pass  # the abort's RST
            a.close()
            i += 1
            time.sleep(0.08)

    saved: list[str] = []
    app = SockmonApp(interval=0.5)
    async with app.run_test(size=size) as pilot:
        followed = socket.create_connection(("127.0.0.1", port))
        peer, _ = lst.accept()
        worker = threading.Thread(target=churn, daemon=True)
        worker.start()
        try:
            loop = asyncio.get_running_loop()
            local = followed.getsockname()[1]
            end = loop.time() + 10
            row = None
            while row is None and loop.time() < end:
                await pilot.pause(0.2)
                row = next((s for s in app.connections.table.visible_rows() if s.sport == local), None)
            if row is None:
                raise SystemExit("the followed connection never showed in the table")
            app.lab.follow_socket(row)
            await pilot.press("D")
            # the tracepoint is host-wide (it names no namespace): the filter keeps this churn's port only
            app.query_one("#diagram-filter").value = f"port:{port}"
            await pilot.pause(1.5)
            followed.close()
            await pilot.pause(0.3)
            peer.close()
            end = loop.time() + 10
            while (FIN_WAIT2, CLOSE) not in app.diagram.path_edges() and loop.time() < end:
                await pilot.pause(0.2)
            await pilot.pause(4.0)  # a few seconds of rates
            saved.append(app.save_screenshot("diagram.svg", out))
        finally:
            stop.set()
            worker.join(5)
            lst.close()
    return saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "screenshots"))
    ap.add_argument("--size", default="160x45")
    ap.add_argument("--no-netns", action="store_true", help="use the current namespace (shows every socket)")
    ap.add_argument("--only", choices=("diagram",), help="shoot only this one (the diagram: 200x60)")
    args = ap.parse_args()
    if not args.no_netns:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        from connpool import reexec_in_private_netns

        extra = ["--only", args.only] if args.only else []
        rc = reexec_in_private_netns("smshots", "SOCKMON_SHOTS_NS", ["--out", args.out, "--size", args.size, *extra])
        if rc is not None:
            return rc
    w, h = (int(x) for x in args.size.lower().split("x"))
    os.makedirs(args.out, exist_ok=True)
    paths = [] if args.only else asyncio.run(shoot(args.out, (w, h)))
    paths += asyncio.run(shoot_diagram(args.out))
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
