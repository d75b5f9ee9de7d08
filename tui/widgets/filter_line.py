"""The filter line's one rule, for every list that has one (the socket lists, History, the state
diagram): the text is parsed with the shared language (`sockmon.core.table.filter.parse_filter`); bad
text shows one inert line under the input and the caller keeps its previous filter (a half-typed
``dport >`` must not flash everything)."""

from __future__ import annotations

from collections.abc import Callable

from sockmon.core.errors import BadInput
from sockmon.core.table.filter import parse_filter
from sockmon.tui.fmt import safe_text
from sockmon.tui.theme import ERROR_STYLE
from textual.widgets import Static


def read_filter_line(text: str, owner_of: Callable, error: Static) -> tuple[bool, Callable | None, str | None]:
    """(ok, predicate or None for empty text, the one-line reason when not ok); ``error`` shows the
    reason, or is cleared and hidden when the text parses."""
    try:
        pred = parse_filter(text, owner_of)
    except BadInput as exc:
        error.update(safe_text(f"✗ {exc} — previous filter kept", style=ERROR_STYLE))
        error.add_class("-shown")
        return False, None, str(exc)
    error.update("")
    error.remove_class("-shown")
    return True, pred, None
