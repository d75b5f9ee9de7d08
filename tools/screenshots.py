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
import secrets
import socket
import subprocess
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
    from sockmon.tui.detail import DetailScreen

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

            # lab panes: start the built-in server, connect the built-in client, send a line
            try:
                await pilot.press("4")
                await pilot.pause(0.3)
                server = app.query_one("ServerPane")
                server.query_one("#server-port").value = "9000"
                server.action_toggle_server()
                await pilot.pause(1.0)
                await pilot.press("3")
                await pilot.pause(0.3)
                client = app.query_one("ClientPane")
                client.query_one("#client-target").value = "127.0.0.1:9000"
                client.action_connect()
                await pilot.pause(1.0)
                client.query_one("#client-send-text").value = "hello, sockmon"
                client.action_send()
                await pilot.pause(1.0)
            except Exception as exc:  # noqa: BLE001 - the lab panes may change; the monitor shots still come
                print(f"lab panes not driven: {exc}", file=sys.stderr)
            app.request_refresh()
            await pilot.pause(1.0)

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
            await pilot.pause(1.0)
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

            timeline = app.timeline
            if timeline is not None:
                timeline.action_follow_client()  # the built-in client's life, not the last detail
            for key, name in (("3", "client"), ("4", "server"), ("5", "timeline")):
                await pilot.press(key)
                await pilot.pause(0.5)
                save(name)
            await pilot.press("1")
            await pilot.press("question_mark")
            await pilot.pause(0.3)
            save("help")
            await pilot.press("escape")
    return saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "screenshots"))
    ap.add_argument("--size", default="160x45")
    ap.add_argument("--no-netns", action="store_true", help="use the current namespace (shows every socket)")
    args = ap.parse_args()
    if not args.no_netns and os.geteuid() == 0 and not os.environ.get("SOCKMON_SHOTS_NS"):
        ns = f"smshots{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            env = dict(os.environ, SOCKMON_SHOTS_NS=ns)
            return subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                                   "--out", args.out, "--size", args.size], env=env).returncode
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=True)
    w, h = (int(x) for x in args.size.lower().split("x"))
    os.makedirs(args.out, exist_ok=True)
    for path in asyncio.run(shoot(args.out, (w, h))):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
