"""`KeyedRows`: the rows of a table as a model (no Textual): rows by key, row marks, filter, sort, view.

`VirtualTable` draws one of these; anyone else asks it (``get(key)``, ``get_row(key)``) instead of a
widget's private state — e.g. the app's ``fresh_record`` and the Keepalive pane.

Row marks: a row that appeared is *new* for ``new_mark_seconds``; a row that left is *gone* (still shown,
dim) for ``fade_seconds``. The caller says which keys appeared and left when it knows (the core's
snapshot diff: ``set_rows(rows, added=..., removed=...)``); otherwise the key sets are compared here.
Bounded: marks expire after those times, and each map is capped at `MAX_MARKS` entries (oldest first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

MAX_MARKS = 20_000  # new / gone marks kept at most (each map), oldest dropped first


def _sort_value(value: Any, none: tuple = (1, 0, "")) -> tuple:
    # None (a blank cell) sorts last; mixed types never raise.
    if value is None:
        return none
    if isinstance(value, (int, float)):
        return (0, 0, value)
    if isinstance(value, tuple):
        return (0, 1, value)
    return (0, 2, str(value))


class KeyedRows:
    def __init__(self, key_fn: Callable[[Any], Hashable], *, new_mark_seconds: float = 3.0,
                 fade_seconds: float = 2.0, max_marks: int = MAX_MARKS) -> None:
        self.key_fn = key_fn
        self.new_mark_seconds = new_mark_seconds
        self.fade_seconds = fade_seconds
        self.max_marks = max_marks
        self.rows: dict[Hashable, Any] = {}  # live rows, in arrival order
        self.added: dict[Hashable, float] = {}  # key -> when it appeared
        self.gone: dict[Hashable, tuple[Any, float]] = {}  # key -> (last row, when it vanished)
        self.filter: Callable[[Any], bool] | None = None
        self.sort_get: Callable[[Any], Any] | None = None  # the sort column's value
        self.sort_comparable = False  # sort_get never returns None / mixed types: sort on it directly
        self.sort_reverse = False
        self.view: list[Hashable] = []  # keys in display order
        self.loaded = False  # the first load marks nothing as new

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: Hashable) -> Any | None:
        """The live row with that key (None if it is not in the newest rows)."""
        return self.rows.get(key)

    def get_row(self, key: Hashable) -> Any | None:
        """The live row, or the last one of a row still fading out."""
        row = self.rows.get(key)
        if row is None and key in self.gone:
            row = self.gone[key][0]
        return row

    def find(self, row: Any) -> Any | None:
        """The newest row with ``row``'s key (the same socket in the newest snapshot), or None."""
        return self.rows.get(self.key_fn(row))

    def set_rows(self, rows: Iterable[Any], now: float | None = None, *, added: Iterable[Any] | None = None,
                 removed: Iterable[Any] | None = None) -> None:
        """Replace the rows. ``added`` / ``removed``: the rows that appeared / left since the previous call,
        when the caller knows (else the key sets are compared)."""
        now = time.monotonic() if now is None else now
        if not isinstance(rows, (list, tuple)):
            rows = list(rows)
        key_fn = self.key_fn
        new_rows = dict(zip(map(key_fn, rows), rows, strict=True))
        old_rows = self.rows
        if self.loaded:
            if self.new_mark_seconds > 0:
                keys = new_rows.keys() - old_rows.keys() if added is None else map(key_fn, added)
                for key in keys:
                    self.added[key] = now
            if self.fade_seconds > 0:
                if removed is None:
                    for key in old_rows.keys() - new_rows.keys():
                        self.gone[key] = (old_rows[key], now)
                else:
                    for row in removed:
                        key = key_fn(row)
                        if key not in new_rows:
                            self.gone[key] = (old_rows.get(key, row), now)
        self.loaded = True
        if self.gone:
            for key in [k for k in self.gone if k in new_rows]:  # came back
                del self.gone[key]
        self.rows = new_rows
        self.expire(now)

    def reload(self) -> None:
        """The next `set_rows` is a first load again (another namespace shown): nothing is marked new
        or gone across it, and the marks on screen are dropped."""
        self.loaded = False
        self.added.clear()
        self.gone.clear()

    def set_key_fn(self, key_fn: Callable[[Any], Hashable]) -> bool:
        """Change how rows are identified; marks are reset, not invented. True if it changed."""
        if key_fn is self.key_fn:
            return False
        self.key_fn = key_fn
        rows = list(self.rows.values())
        self.rows = dict(zip(map(key_fn, rows), rows, strict=True))
        self.added.clear()
        self.gone.clear()
        return True

    def expire(self, now: float) -> bool:
        """Drop marks older than their time (and beyond `MAX_MARKS`); True if any went."""
        changed = False
        for marks, limit, when in ((self.added, now - self.new_mark_seconds, lambda v: v),
                                   (self.gone, now - self.fade_seconds, lambda v: v[1])):
            if not marks:
                continue
            old = [k for k, v in marks.items() if when(v) <= limit]
            keep = len(marks) - len(old)
            if keep > self.max_marks:  # insertion order is age order: the oldest of the rest go too
                expired = set(old)
                old.extend([k for k in marks if k not in expired][: keep - self.max_marks])
            for k in old:
                del marks[k]
            changed = changed or bool(old)
        return changed

    def is_new(self, key: Hashable) -> bool:
        return key in self.added

    def is_vanishing(self, key: Hashable) -> bool:
        return key in self.gone

    def rebuild(self) -> list[Hashable]:
        """The keys in display order: live and fading rows, filtered, sorted."""
        rows = list(self.rows.values())
        if self.gone:
            rows.extend(r for r, _ in self.gone.values())
        pred = self.filter
        if pred is not None:
            rows = list(filter(pred, rows))
        get = self.sort_get
        if get is not None:
            if self.sort_comparable:
                rows.sort(key=get, reverse=self.sort_reverse)
            elif self.sort_reverse:  # blanks last in either direction (busiest first, then the blanks)
                rows.sort(key=lambda r: _sort_value(get(r), (-1, 0, "")), reverse=True)
            else:
                rows.sort(key=lambda r: _sort_value(get(r)))
        self.view = list(map(self.key_fn, rows))
        return self.view

    def sizes(self) -> dict[str, int]:
        return {"rows": len(self.rows), "new": len(self.added), "gone": len(self.gone)}
