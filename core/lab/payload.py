"""What a user types, turned into the bytes that go on the wire (sans-IO, shared by the TUI and the CLI).

- `unescape(text)`: C escapes ``\\r \\n \\t \\0 \\\\ \\xHH`` → bytes (text is UTF-8); an unknown or cut
  escape is refused with one clear line (`BadInput`), never guessed.
- `LineEnding`: what text mode appends to a line (none / LF / CRLF, CRLF by default like ``nc -C``).
- `text_lines(text, ending, escapes)`: a multi-line paste becomes every line, each with the ending.
- `parse_hex(text)`: ``50 49 4e 47`` / ``50:49`` / ``5049`` → bytes.
"""

from __future__ import annotations

import re
from enum import StrEnum

from sockmon.core.errors import BadInput

_SIMPLE = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\", "'": b"'", '"': b'"'}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.|$)", re.S)


class LineEnding(StrEnum):
    NONE = "none"
    LF = "lf"
    CRLF = "crlf"

    @property
    def bytes(self) -> bytes:
        return {"none": b"", "lf": b"\n", "crlf": b"\r\n"}[self.value]

    @property
    def label(self) -> str:
        return {"none": "no line ending", "lf": "LF (\\n)", "crlf": "CRLF (\\r\\n)"}[self.value]

    def next(self) -> LineEnding:
        order = list(LineEnding)
        return order[(order.index(self) + 1) % len(order)]


def unescape(text: str) -> bytes:
    """``PING\\r\\n`` → ``b"PING\\r\\n"``. Refuses ``\\q``, a lone trailing ``\\`` and ``\\x4`` in one line."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode()
        esc = m.group(1)
        if esc.startswith("x") and len(esc) == 3:
            out.append(int(esc[1:], 16))
        elif esc in _SIMPLE:
            out += _SIMPLE[esc]
        elif esc == "":
            raise BadInput("a lone backslash at the end: write \\\\ for a backslash")
        elif esc == "x":
            raise BadInput(f"bad escape \\x{text[m.end():m.end() + 2]!s}: use \\xHH with two hex digits")
        else:
            raise BadInput(f"unknown escape \\{esc}: use \\r \\n \\t \\0 \\\\ or \\xHH")
        pos = m.end()
    out += text[pos:].encode()
    return bytes(out)


def text_lines(text: str, ending: LineEnding = LineEnding.CRLF, escapes: bool = False) -> bytes:
    """Every line of ``text`` (a paste may hold several), each followed by ``ending``.

    Line breaks in the text itself (LF, CRLF or CR) separate lines; the chosen ending replaces them, so a
    pasted HTTP request goes out with CRLF whatever the clipboard held. With ``escapes`` each line's C
    escapes are turned into bytes first.
    """
    lines = re.split(r"\r\n|\r|\n", text)
    if len(lines) > 1 and lines[-1] == "":  # a paste that ends with a line break: no extra empty line
        lines.pop()
    end = ending.bytes
    return b"".join((unescape(line) if escapes else line.encode()) + end for line in lines)


def parse_hex(text: str) -> bytes:
    """Hex digits with optional spaces / colons between bytes; one clear line when it is not hex."""
    raw = text.replace(":", " ").strip()
    if not raw:
        raise BadInput("empty hex: type bytes like 50 49 4e 47")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise BadInput(f"bad hex {text!r}: use pairs of hex digits like 50 49 4e 47") from None
