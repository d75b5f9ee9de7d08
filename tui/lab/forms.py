"""What the two lab panes (Client, Server) share: the lifecycle keys (shutdown RD/WR/RDWR, close, abort),
leaving a field with Escape, jumping to the data field with ``i``, one inline error line that is
also a notification, and the form parsers / validators of both panes. Each pane says what its lifecycle actions act on (its connection, or the selected
client) through its own ``action_shutdown`` / ``action_close`` / ``action_abort``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.text import Text
from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.events import Event
from sockmon.core.text import inert
from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Static

SHUTDOWN = Binding.Group("Shut", compact=True)


def lifecycle_bindings(prefix: str, *, what: str) -> list[Binding]:
    """The shutdown / close / abort keys, the same letters in both lab panes. Descriptions are short (the
    footer of an 80-column terminal); the tooltip says it in full (help screen, mouse hover)."""
    return [
        Binding("R", "shutdown('rd')", "Shut RD", id=f"{prefix}.shutdown_rd", group=SHUTDOWN,
                tooltip=f"Shut RD: shutdown(SHUT_RD) of {what}"),
        Binding("W", "shutdown('wr')", "Shut WR", id=f"{prefix}.shutdown_wr", group=SHUTDOWN,
                tooltip=f"Shut WR: shutdown(SHUT_WR) of {what}, sends FIN"),
        Binding("B", "shutdown('rdwr')", "Shut RDWR", id=f"{prefix}.shutdown_rdwr", group=SHUTDOWN,
                tooltip=f"Shut RDWR: shutdown(SHUT_RDWR) of {what}"),
        Binding("x", "close", "Close", id=f"{prefix}.close", tooltip=f"Close: close() {what} (honours SO_LINGER)"),
        Binding("a", "abort", "Abort", id=f"{prefix}.abort", tooltip=f"Abort: linger 0 + close(): RST to {what}"),
        Binding("i", "focus_data", "Type data", id=f"{prefix}.focus_data",
                tooltip="Type data: jump to the send field (Enter sends, Esc leaves it)"),
        Binding("escape", "leave_field", "Leave field", id=f"{prefix}.leave_field", show=False),
    ]


def event_error_line(ev: Event) -> str:
    """One line for a failed call: ``what: ENAME: meaning → action`` (inline and notification alike)."""
    line = ev.detail or ev.kind.value
    if ev.errno_name:
        line = f"{line}: {ev.errno_name}: {ev.meaning}"
        if ev.action:
            line += f" → {ev.action}"
    return line


def request_refresh(app) -> None:
    fn = getattr(app, "request_refresh", None)
    if callable(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - the socket table will catch up on its own
            pass


def quiet_stop(engine) -> None:
    try:
        engine.stop()
    except Exception:  # noqa: BLE001 - shutting down anyway
        pass


def stop_in_background(engine, name: str) -> None:
    """stop() joins the engine thread: never on the UI thread."""
    threading.Thread(target=quiet_stop, args=(engine,), name=name, daemon=True).start()


class LabPane(Vertical, can_focus=True):
    """Base of the Client and Server panes: error line, field validation feedback, Escape / ``i``."""

    TITLE = "Lab"  # notification title
    PREFIX = "lab"  # widget id prefix: #<prefix>-error, #<prefix>-send-text

    def __init__(self, *, name: str | None = None, id: str | None = None,  # noqa: A002
                 classes: str | None = None, engine_factory=None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.engine = None
        self._engine_factory = engine_factory  # seam: tests hand in a fake engine
        self.last_error: str | None = None

    def _error_line(self) -> Static:
        return self.query_one(f"#{self.PREFIX}-error", Static)

    def show_error(self, message: str, *, notify: bool = True) -> None:
        """One clear line, inline and as a notification; the app keeps running."""
        self.last_error = message
        if self.is_mounted:
            self._error_line().update(Text(inert(message)))  # errors carry names and typed text: never markup
        if notify:
            self.notify(inert(message), title=self.TITLE, severity="error", markup=False, timeout=6)

    def clear_error(self) -> None:
        self.last_error = None
        if self.is_mounted:
            self._error_line().update("")

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if not self.is_mounted:
            return
        result = event.validation_result
        if result is not None and not result.is_valid:
            msgs = result.failure_descriptions
            self._error_line().update(Text(inert(msgs[0] if msgs else "bad value")))
        elif self.last_error is None:
            self._error_line().update("")

    def done_with_field(self) -> None:
        """Enter applied a form field: give the keys back to the pane (digits switch panes again)."""
        if self.last_error is None:
            self.focus()

    def action_leave_field(self) -> None:
        self.focus()

    def action_focus_data(self) -> None:
        self.query_one(f"#{self.PREFIX}-send-text", Input).focus()


MAX_TIMEOUT = 600.0
MAX_USER_TIMEOUT_MS = 2**31 - 1


# ---------------------------------------------------------------------- parsing (both lab panes)
def parse_timeout(text: str) -> float:
    raw = (text or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"bad timeout {raw!r}: give seconds, e.g. 5 or 0.5") from None
    if not 0 < value <= MAX_TIMEOUT or value != value:
        raise BadInput(f"bad timeout {raw!r}: use more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return value


def parse_int(text: str, what: str, low: int, high: int) -> int:
    raw = (text or "").strip()
    if not raw or not raw.isascii() or not raw.isdigit():
        raise BadInput(f"bad {what} {raw!r}: give a whole number {low}-{high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadInput(f"bad {what} {value}: use {low}-{high}")
    return value


def parse_hex(text: str) -> bytes:
    raw = (text or "").strip().replace(":", " ").replace("0x", "")
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        raise BadInput(f"bad hex {text!r}: give pairs of hex digits, e.g. 'de ad be ef'") from None
    if not data:
        raise BadInput("empty hex: give pairs of hex digits, e.g. 'de ad be ef'")
    return data


def parse_endpoint_text(text: str):
    from sockmon.core.lab.address import parse_endpoint

    return parse_endpoint(text)


def parse_linger_seconds(text: str) -> int:
    from sockmon.core.lab.options import MAX_LINGER

    return parse_int(text, "linger seconds", 1, MAX_LINGER)


def parse_user_timeout(text: str) -> int:
    return parse_int(text, "user timeout (ms)", 0, MAX_USER_TIMEOUT_MS)


def parse_keep(what: str) -> Callable[[str], int]:
    from sockmon.core.lab.options import MAX_KEEPCNT, MAX_KEEPIDLE, MAX_KEEPINTVL

    top = {"idle": MAX_KEEPIDLE, "intvl": MAX_KEEPINTVL, "cnt": MAX_KEEPCNT}[what]
    return lambda text: parse_int(text, f"keepalive {what}", 1, top)


class CoreValidator(Validator):
    """Runs a parser that raises BadInput; its one-line message becomes the validation failure."""

    def __init__(self, parse: Callable[[str], object]) -> None:
        super().__init__()
        self.parse = parse

    def validate(self, value: str) -> ValidationResult:
        try:
            self.parse(value)
        except SockmonError as exc:
            return self.failure(str(exc))
        return self.success()


def hexdump(data: bytes, offset: int = 0, width: int = 16) -> list[str]:
    lines = []
    for i in range(0, len(data), width):
        chunk = data[i:i + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset + i:06x}  {hexes:<{width * 3 - 1}}  {text}")
    return lines


def field_error(pane, inputs: list[Input]) -> str | None:
    """Validate ``inputs``; the first failure is shown inline, notified, and returned (fields keep their text)."""
    for field in inputs:
        result = field.validate(field.value)
        if result is not None and not result.is_valid:
            message = result.failure_descriptions[0] if result.failure_descriptions else "bad value"
            pane.show_error(message)  # focus stays put: a one-key action never lands in the field
            return message
    return None
