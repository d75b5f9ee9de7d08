"""Untrusted text made inert for a terminal.

Process names, command lines, user and namespace names, peer bytes shown as text and error strings
come from other users and other hosts. Before any of them reaches a terminal (the TUI or `ls`'s text
output) every character that a terminal would act on is replaced by a visible escape: C0 controls
(ESC, BEL, CR, …), DEL, C1 controls (U+0080–U+009F, which some terminals treat as ESC [ …), line and
paragraph separators, and the bidirectional overrides that reorder what is displayed. Printable text,
including non-ASCII letters, is kept as is. JSON output does not use this: the encoder escapes and
stays lossless.

Markup is a separate concern: the TUI must also never hand these strings to a markup parser (use
`rich.text.Text` / `Content` objects, not markup strings).
"""

from __future__ import annotations

import re

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# C0, DEL, C1, LINE/PARAGRAPH SEPARATOR, bidi embeddings/overrides/isolates, BOM / zero-width no-break.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def inert(text: str) -> str:
    """`text` with every character a terminal would act on shown as a visible escape (``\\x1b``)."""
    if _UNSAFE.search(text) is None:  # the common case costs one scan
        return text
    return _UNSAFE.sub(_escape, text)


def inert_bytes(data: bytes) -> str:
    """Peer bytes as text: decoded as UTF-8 where valid (invalid bytes as ``\\xNN``), then `inert`."""
    return inert(data.decode("utf-8", "backslashreplace"))
