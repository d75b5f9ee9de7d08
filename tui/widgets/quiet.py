"""`quiet_update`: put new content in a Static without a layout of the whole screen when nothing
about its size can change.

`Static.update` asks for a layout each time, and a layout of the screen costs about as much as drawing
it: with the info lines, the status bar and the side boxes updated each refresh, that was several
layouts per second for text of the same size (measured with bench/bench_cpu.py). Content equal to
what is shown is skipped; a widget whose height is a fixed number of cells and whose width is not
``auto`` (the one-line info and status bars) is repainted without a layout.
"""

from __future__ import annotations

from textual.css.scalar import Unit
from textual.widgets import Static

_NOTHING = object()


def quiet_update(widget: Static, content, *, key=_NOTHING) -> bool:
    """Show ``content`` in ``widget`` unless it shows that already (``key``: what to compare instead of
    the content, for renderables without equality such as a Rich Table). Returns True if updated."""
    seen = content if key is _NOTHING else key
    if getattr(widget, "_quiet_last", _NOTHING) == seen:
        return False
    widget._quiet_last = seen
    height, width = widget.styles.height, widget.styles.width
    fixed = height is not None and height.unit == Unit.CELLS and (width is None or width.unit != Unit.AUTO)
    widget.update(content, layout=not fixed)
    return True
