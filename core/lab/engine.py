"""The loop both lifecycle engines share: one daemon thread, a selector, a command queue, a wake-up pair.

Commands from any thread are queued (``post``) and run in the engine thread; events produced anywhere
are queued (``queue_event``) and handed to ``on_event`` only from the engine thread, in order.
Nothing here blocks a caller: posting is an append plus one byte written to a non-blocking socketpair.
``call`` posts a command and returns a Future of its result (option changes: the value read back).

``netns``: the engine thread enters that network namespace before it does anything else, so every socket
it creates lives there (setns moves only the calling thread; a socket keeps its namespace for life).
"""

from __future__ import annotations

import collections
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError

from sockmon.core.errors import SockmonError, errno_info
from sockmon.core.lab.events import Event, EventKind, make_event
from sockmon.core.lab.options import SocketOptions, read_options, timed_out_meaning

log = logging.getLogger(__name__)
OnEvent = Callable[[Event], None]


def failure_fields(code: int | None) -> dict:
    """errno_name / meaning / action keyword arguments for make_event."""
    if code is None:
        return {}
    info = errno_info(code)
    return {"errno_name": info.name, "meaning": info.meaning, "action": info.action}


def socket_failure_fields(code: int | None, sock: socket.socket | None, cached: SocketOptions | None,
                          unacked: int) -> dict:
    """`failure_fields`, with the context the errno table cannot know: an ETIMEDOUT on an established
    connection comes from keepalive (or retransmissions / TCP_USER_TIMEOUT), not from an address; the
    socket's options (read now, else ``cached``) say which."""
    fields = failure_fields(code)
    if code != errno.ETIMEDOUT or sock is None:
        return fields
    try:
        current = read_options(sock)
    except SockmonError:
        current = cached
    if current is not None:
        said = timed_out_meaning(current.keepalive, current.user_timeout_ms, unacked)
        if said is not None:
            fields["meaning"], fields["action"] = said
    return fields


class EngineLoop:
    name = "sockmon-engine"

    def __init__(self, on_event: OnEvent | None, *, netns: str | None = None) -> None:
        self._on_event = on_event
        self.netns = netns
        self._cmds: collections.deque[Callable[[], None]] = collections.deque()
        self._events: collections.deque[Event] = collections.deque()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping = False
        self._lock = threading.RLock()  # guards sockets that callers may touch (options, close)
        self._thread: threading.Thread | None = None
        self._background: set[threading.Thread] = set()

    # -- any thread -------------------------------------------------------------------------------------
    def _start_thread(self) -> None:
        """Start the engine thread; with ``netns`` it enters the namespace first (failure raises here)."""
        entered = threading.Event()
        box: list[BaseException] = []

        def run() -> None:
            if self.netns is not None:
                from sockmon.core.netns import enter_netns_here

                try:
                    enter_netns_here(self.netns)
                except BaseException as exc:  # re-raised in the starting thread
                    box.append(exc)
                    entered.set()
                    self._sel.close()
                    self._wake_r.close()
                    self._wake_w.close()
                    return
            entered.set()
            self._run()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        entered.wait()
        if box:
            self._stopping = True
            raise box[0]

    def post(self, fn: Callable[[], None]) -> bool:
        """Queue a command for the engine thread (dropped once the engine is stopping: returns False)."""
        if self._stopping:
            return False
        self._cmds.append(fn)
        self._wake()
        return True

    def call(self, fn: Callable[[], object]) -> Future:
        """Run ``fn`` in the engine thread; a Future of its result (None at once if the engine stopped).

        Never blocks the caller; wait with ``.result(timeout)`` only off the UI thread. Called from the
        engine thread itself (an on_event callback), it runs at once.
        """
        fut: Future = Future()

        def run() -> None:
            if fut.done() or not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:  # the caller sees it in .result()
                fut.set_exception(exc)

        if threading.current_thread() is self._thread:
            run()
        elif not self.post(run) or not self.running:
            try:  # nobody will run it: the engine stopped (a race with its last round is harmless here)
                fut.set_result(None)
            except InvalidStateError:
                pass
        return fut

    def queue_event(self, kind: EventKind, detail: str = "", **kw) -> None:
        self._events.append(make_event(kind, detail, **kw))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or shutting down

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the loop to finish (it closes its sockets) and wait for it, at most ``timeout`` seconds."""
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- engine thread ----------------------------------------------------------------------------------
    def reread_options(self, sock: socket.socket, old: SocketOptions | None,
                       store: Callable[[SocketOptions], None], **where) -> None:
        """Read the socket's options again and ``store`` them; an OPTION event when they differ from
        ``old`` (someone else changed them). A failed read keeps ``old``."""
        try:
            fresh = read_options(sock)
        except SockmonError:
            return
        store(fresh)
        if old is not None and fresh != old:
            self.emit(EventKind.OPTION, "options changed (read back from the kernel; not by this engine)",
                      options=fresh, **where)

    def emit(self, kind: EventKind, detail: str = "", **kw) -> None:
        self._flush_events()
        self._deliver(make_event(kind, detail, **kw))

    def _deliver(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken callback must not kill the engine
            log.exception("on_event callback failed")

    def _flush_events(self) -> None:
        while self._events:
            self._deliver(self._events.popleft())

    def run_in_background(self, work: Callable[[], None]) -> None:
        """Run blocking work (a lingering close) in a daemon thread; the loop waits for it before exiting."""

        def wrapper() -> None:
            try:
                work()
            finally:
                with self._lock:
                    self._background.discard(threading.current_thread())
                self._wake()

        thread = threading.Thread(target=wrapper, name=f"{self.name}-close", daemon=True)
        with self._lock:
            self._background.add(thread)
        thread.start()

    def _timeout(self) -> float | None:
        return 0.5

    def _on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        """Periodic work after each select round (timers, sampling)."""

    def _teardown(self) -> None:
        """Close everything; called once in the engine thread when stopping."""

    def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    ready = self._sel.select(self._timeout())
                except InterruptedError:
                    ready = []
                for key, mask in ready:
                    if key.data == "wake":
                        self._drain_wake()
                    else:
                        self._guarded(self._on_ready, key, mask)
                while self._cmds and not self._stopping:
                    self._run_command(self._cmds.popleft())
                self._guarded(self._tick)
                self._flush_events()
            while self._cmds:  # commands posted before stop() still run (e.g. close, then stop)
                self._run_command(self._cmds.popleft())
        except Exception as exc:  # pragma: no cover - a bug; report it rather than die silently
            log.exception("engine loop crashed")
            self.emit(EventKind.ERROR, f"engine loop crashed: {exc!r}")
        finally:
            self._teardown()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with self._lock:
                    pending = list(self._background)
                if not pending:
                    break
                pending[0].join(max(0.0, deadline - time.monotonic()))
            self._flush_events()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _run_command(self, fn: Callable[[], None]) -> None:
        self._guarded(fn)

    def _guarded(self, fn: Callable, *args) -> None:
        """Run one step; an unexpected exception is reported as an ERROR event and the loop goes on."""
        try:
            fn(*args)
        except Exception as exc:
            log.exception("engine step failed")
            self.emit(EventKind.ERROR, f"internal error: {exc!r}", **failure_fields(getattr(exc, "errno", None)))

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
