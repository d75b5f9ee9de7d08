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
from sockmon.core.lab.payload import LineEnding, parse_hex, text_lines, unescape
from sockmon.core.text import inert
from textual import events, on
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Static

SHUTDOWN = Binding.Group("Shut", compact=True)
SEND_MODES = [("text", "text"), ("hex", "hex"), ("framed", "framed")]
SEND_PLACEHOLDER = {"text": "text to send (Enter sends the line + its ending)", "hex": "hex bytes, e.g. 50 49 4e 47",
                    "framed": "payload: sent as a 4-byte length + bytes"}


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


def send_bindings(prefix: str) -> list[Binding]:
    """Line ending and C escapes of the send box. The ctrl keys also work while typing in the field."""
    return [
        Binding("e,ctrl+n", "cycle_ending", "Ending", id=f"{prefix}.ending", key_display="e",
                tooltip="Ending: the line ending text mode appends: CRLF → none → LF (ctrl+n in the field)"),
        Binding("E,ctrl+t", "toggle_escapes", "Esc\\", id=f"{prefix}.escapes", key_display="E",
                tooltip="Esc\\: C escapes in text mode on / off: \\r \\n \\t \\0 \\\\ \\xHH (ctrl+t in the field)"),
    ]


def encode_payload(mode: str, text: str, ending: LineEnding, escapes: bool) -> bytes:
    """What the send box puts on the wire (framing, for ``framed``, is added by the caller's engine)."""
    if mode == "hex":
        return parse_hex(text)
    if mode == "framed":
        if not text:
            raise BadInput("nothing to send: type a payload first")
        return unescape(text) if escapes else text.encode("utf-8")
    if not text and ending is LineEnding.NONE:
        raise BadInput("nothing to send: type some text first (or pick a line ending with e)")
    return text_lines(text, ending, escapes)


def ending_text(ending: LineEnding, escapes: bool) -> Text:
    """``⏎ CRLF · esc off``: shown next to the send box."""
    out = Text()
    out.append("⏎ ", "dim")
    out.append({"none": "none", "lf": "LF", "crlf": "CRLF"}[ending.value], "bold")
    out.append(" · esc ", "dim")
    out.append("on" if escapes else "off", "bold" if escapes else "dim")
    return out


def clock_text(ts: float | None = None) -> str:
    """Wall-clock ``HH:MM:SS.mmm`` (local time) of a monotonic ``ts`` (now when None): lines up with logs."""
    import time

    wall = time.time() if ts is None else time.time() - (time.monotonic() - ts)
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 1000) % 1000:03d}"


def data_line(direction: str, data: bytes, at: str, who: str = "") -> Text:
    """``12:00:01.234 ▶ 6 B 'PING\\r\\n'``: one direction-marked line of the data log (peer bytes inert)."""
    arrow, style = ("▶", "#e5c07b") if direction == "out" else ("◀", "#56b6c2")
    out = Text()
    out.append(f"{at} ", "dim")
    if who:
        out.append(f"[{inert(who)}] ", "dim")
    out.append(f"{arrow} {len(data)} B  {inert(repr(data.decode('utf-8', 'backslashreplace')))}", style)
    return out


class SendInput(Input):
    """The send field: a paste with several lines is not cut to its first line (Input's own behaviour)
    but handed to the pane whole (`MultiLinePaste`), which sends every line."""

    class MultiLinePaste(Message):
        def __init__(self, field: SendInput, text: str) -> None:
            super().__init__()
            self.field = field
            self.text = text

        @property
        def control(self) -> SendInput:
            return self.field

    def _on_paste(self, event: events.Paste) -> None:
        if event.text and ("\n" in event.text or "\r" in event.text):
            event.stop()
            event.prevent_default()
            pos = self.cursor_position
            whole = self.value[:pos] + event.text + self.value[pos:]
            self.post_message(self.MultiLinePaste(self, whole))
            return
        super()._on_paste(event)


def key_line_bindings(bindings: list[Binding]) -> list[Binding]:
    """The pane's keys leave the one-line Footer (the app's global keys stay there) for the pane's own key
    line (`key_line_text`), which wraps: at 80 columns every lab key stays visible."""
    import dataclasses

    return [dataclasses.replace(b, show=False) for b in bindings]


def key_line_text(bindings: list[Binding]) -> Text:
    """``o Connect  T Target  … R/W/B Shut`` from the pane's bindings (grouped keys share one label)."""
    out = Text()
    seen_groups: set[str] = set()
    for b in bindings:
        if not b.description or b.key == "escape":
            continue
        if b.group is not None:
            if b.group.description in seen_groups:
                continue
            seen_groups.add(b.group.description)
            keys = "/".join(x.key_display or x.key.split(",")[0] for x in bindings if x.group == b.group)
            label = b.group.description
        else:
            keys, label = b.key_display or b.key.split(",")[0], b.description
        if out:
            out.append("  ")
        out.append(keys, "bold #e5c07b")
        out.append(" " + label)
    return out


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

    DEFAULT_CSS = """
    LabPane .lab-keys { height: auto; color: $text-muted; }
    """

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
        if notify and not self.on_screen():
            # on screen the inline line says it (a toast would cover the pane's state line at 80x24)
            self.notify(inert(message), title=self.TITLE, severity="error", markup=False, timeout=6)

    def on_screen(self) -> bool:
        """The pane is the visible tab of the current screen (its inline error line can be seen)."""
        try:
            return self.is_mounted and self.display and self.screen is self.app.screen and bool(self.region)
        except Exception:  # noqa: BLE001 - not attached
            return False

    def focus_entry(self) -> None:
        """Entering the pane (its key, a click on its tab, Tab): focus where typing starts."""
        self.focus()


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

    def key_line(self) -> Static:
        """The pane's second footer line: every key of the pane (the Footer keeps the app's keys)."""
        return Static(key_line_text(type(self).BINDINGS), id=f"{self.PREFIX}-keys", classes="lab-keys")

    def action_focus_data(self) -> None:
        self.query_one(f"#{self.PREFIX}-send-text", Input).focus()

    # ------------------------------------------------------------------ send box (both panes)
    ending: LineEnding = LineEnding.CRLF
    escapes: bool = False

    def _send_mode(self) -> str:
        from textual.widgets import Select

        if not self.is_mounted:
            return "text"
        value = self.query_one(f"#{self.PREFIX}-send-mode", Select).value
        return value if isinstance(value, str) else "text"

    def _show_ending(self) -> None:
        if self.is_mounted:
            self.query_one(f"#{self.PREFIX}-ending", Static).update(ending_text(self.ending, self.escapes))

    def action_cycle_ending(self) -> None:
        self.ending = self.ending.next()
        self._show_ending()

    def action_toggle_escapes(self) -> None:
        self.escapes = not self.escapes
        self._show_ending()

    def payload_from(self, text: str) -> bytes:
        return encode_payload(self._send_mode(), text, self.ending, self.escapes)

    def _send_payload(self, text: str) -> bool:  # each pane sends its own way
        raise NotImplementedError

    def action_send(self) -> None:
        field = self.query_one(f"#{self.PREFIX}-send-text", Input)
        if self._send_payload(field.value) and self._send_mode() == "text":
            field.value = ""  # like a chat client: the line went out (focus stays: type the next one)

    def send_pasted(self, event: SendInput.MultiLinePaste) -> None:
        """A paste of several lines: every line goes out (text mode: each with the ending)."""
        event.stop()
        if self._send_payload(event.text):
            event.field.value = ""

    def action_cycle_send_mode(self) -> None:
        from textual.widgets import Select

        select = self.query_one(f"#{self.PREFIX}-send-mode", Select)
        order = [v for _, v in SEND_MODES]
        current = select.value if select.value in order else "text"
        select.value = order[(order.index(current) + 1) % len(order)]

    def show_send_placeholder(self, mode) -> None:
        self.query_one(f"#{self.PREFIX}-send-text", Input).placeholder = SEND_PLACEHOLDER.get(str(mode), "")


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
