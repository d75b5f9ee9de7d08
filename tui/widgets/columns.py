"""Columns of a `VirtualTable`: what a column is, which ones fit a width, the user's choice of order and
visibility, and that choice saved for the session (and, optionally, in a small JSON file).

No Textual here: the layout is a pure function of the columns, the choice and a width.

Adding a column to a pane is one `Column` entry with a ``priority``: smaller priorities come first
(further left) in the default order, and the columns are laid out left to right in that order; the
first ones that fit the width are on screen, the others follow to the right, reached by scrolling
sideways (←/→) while the ``frozen`` key columns (State, Local) stay put. The key columns and the
`KEEP_AFTER_KEY` columns after them (by default Peer and Process) stay on screen at any width: the
growable columns shrink toward their ``min_width`` to make room. Room left over goes to growable
columns (``max_width`` above ``width``: addresses, the process). The user reorders, shows and hides
columns in the column chooser (``C``): the order is the priority, so moving a column up brings it on
screen on a narrow terminal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.style import Style
from rich.text import Text

CellValue = str | Text
KEEP_AFTER_KEY = 2  # columns after the key columns that stay on screen at any width (others shrink for them)
SEPARATOR = 1  # one blank cell after every column


@dataclass(frozen=True, slots=True)
class Column:
    """``get(row)`` is the value sorted on; ``fmt(row)`` the cell shown (str, or Text for colour).

    ``width`` is the preferred width; ``min_width`` / ``max_width`` bound it when the table shrinks a
    column for the key columns or grows it with room to spare (both default to ``width``).
    ``overflow``: "end" cuts the tail, "start" keeps the tail, "endpoint" ellipsizes an address in
    the middle and never cuts its port. ``help`` is the column chooser's description.
    """

    key: str
    label: str
    width: int
    get: Callable[[Any], Any]
    fmt: Callable[[Any], CellValue] | None = None
    justify: str = "left"  # "left" | "right"
    style: Callable[[Any], Style | None] | None = None  # per-cell style for plain str cells
    overflow: str = "end"  # "end" | "start" | "endpoint"
    comparable: bool = False  # get() never returns None / mixed types: sort on it directly (faster)
    priority: int = 50  # smaller: further left by default, and on screen first
    frozen: bool = False  # a key column: stays put when the table scrolls sideways; never hidden
    min_width: int | None = None
    max_width: int | None = None
    help: str = ""

    @property
    def lo(self) -> int:
        return self.width if self.min_width is None else min(self.min_width, self.width)

    @property
    def hi(self) -> int:
        return self.width if self.max_width is None else max(self.max_width, self.width)


@dataclass(frozen=True, slots=True)
class ColumnChoice:
    """The user's order (keys, most important first) and hidden keys. Keys a table does not have are
    ignored; the table's columns missing from ``order`` take their default place."""

    order: tuple[str, ...] = ()
    hidden: frozenset[str] = frozenset()

    def to_json(self) -> dict:
        return {"order": list(self.order), "hidden": sorted(self.hidden)}

    @classmethod
    def from_json(cls, data: Any) -> ColumnChoice:
        if not isinstance(data, dict):
            raise ValueError("a column choice is an object with 'order' and 'hidden'")
        order = data.get("order", [])
        hidden = data.get("hidden", [])
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            raise ValueError("'order' must be a list of column keys")
        if not isinstance(hidden, list) or not all(isinstance(k, str) for k in hidden):
            raise ValueError("'hidden' must be a list of column keys")
        return cls(tuple(dict.fromkeys(order)), frozenset(hidden))


def default_order(columns: Iterable[Column]) -> list[str]:
    """Frozen columns first, then by priority; ties keep the declaration order."""
    cols = list(columns)
    ranked = sorted(range(len(cols)), key=lambda i: (not cols[i].frozen, cols[i].priority, i))
    return [cols[i].key for i in ranked]


def resolve_order(columns: Iterable[Column], choice: ColumnChoice | None) -> list[str]:
    """Every column's key in display order: the choice's order (unknown keys dropped), the columns it
    does not name inserted after their default predecessor, frozen columns always first."""
    cols = list(columns)
    default = default_order(cols)
    if choice is None or not choice.order:
        return default
    known = set(default)
    order = [k for k in choice.order if k in known]
    placed = set(order)
    for i, key in enumerate(default):
        if key in placed:
            continue
        # after the nearest column before it in the default order that is placed; else at the front
        at = 0
        for prev in reversed(default[:i]):
            if prev in placed:
                at = order.index(prev) + 1
                break
        order.insert(at, key)
        placed.add(key)
    frozen = {c.key for c in cols if c.frozen}
    return [k for k in order if k in frozen] + [k for k in order if k not in frozen]


@dataclass(frozen=True, slots=True)
class Layout:
    """Columns to draw, in order, with their widths: ``on_screen`` fit the width, the rest follow to
    the right (scrolled to); the first ``frozen`` of them stay put when scrolling."""

    columns: tuple[Column, ...]
    on_screen: int
    frozen: int
    hidden: tuple[str, ...] = ()

    @property
    def total_width(self) -> int:
        return sum(c.width + SEPARATOR for c in self.columns)

    @property
    def frozen_width(self) -> int:
        return sum(c.width + SEPARATOR for c in self.columns[: self.frozen])

    @property
    def off_screen(self) -> tuple[Column, ...]:
        return self.columns[self.on_screen:]


def _span(cols: Iterable[Column], widths: Mapping[str, int] | None = None) -> int:
    return sum((widths[c.key] if widths else c.width) + SEPARATOR for c in cols)


def layout_columns(columns: Iterable[Column], choice: ColumnChoice | None, width: int) -> Layout:
    """Which columns fit ``width`` cells, how wide each is, and in what order (see the module doc)."""
    cols = {c.key: c for c in columns}
    hidden = (choice.hidden if choice else frozenset()) - {k for k, c in cols.items() if c.frozen}
    order = [k for k in resolve_order(cols.values(), choice) if k not in hidden]
    seq = [cols[k] for k in order]
    kept = [c for c in seq if c.frozen] + [c for c in seq if not c.frozen][:KEEP_AFTER_KEY]
    shown: set[str] = {c.key for c in kept}
    used = _span(kept)
    for c in seq:  # the others in order, at their preferred width, while they fit
        if c.key in shown:
            continue
        if used + c.width + SEPARATOR > width:
            break
        shown.add(c.key)
        used += c.width + SEPARATOR
    on = [c for c in seq if c.key in shown]
    widths = {c.key: c.width for c in on}
    over = used - width
    if over > 0:  # the kept columns do not fit at their preferred widths: shrink the growable ones
        _adjust(on, widths, -over, lambda c: c.lo)
    elif over < 0:  # room to spare: grow the growable ones toward their max
        _adjust(on, widths, -over, lambda c: c.hi)
    final_on = [replace(c, width=widths[c.key]) if widths[c.key] != c.width else c for c in on]
    off = [c for c in seq if c.key not in shown]
    frozen = sum(1 for c in final_on if c.frozen)
    return Layout(tuple(final_on + off), len(final_on), frozen, tuple(k for k in cols if k in hidden))


def _adjust(cols: list[Column], widths: dict[str, int], delta: int, bound: Callable[[Column], int]) -> None:
    """Spread ``delta`` cells (negative: take them) over the columns that can move toward ``bound``,
    one cell at a time, round-robin, so they stay in proportion."""
    step = 1 if delta > 0 else -1
    left = abs(delta)
    while left:
        movable = [c for c in cols if (widths[c.key] < bound(c) if step > 0 else widths[c.key] > bound(c))]
        if not movable:
            return
        for c in movable:
            if not left:
                return
            widths[c.key] += step
            left -= 1


# ---------------------------------------------------------------------------- the user's choices
CONFIG_NAME = "columns.json"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/sockmon/columns.json`` (``~/.config`` when XDG_CONFIG_HOME is unset or relative)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "sockmon" / CONFIG_NAME


@dataclass
class ColumnPrefs:
    """Each table's `ColumnChoice` (by table name) for the session; with ``path``, read at start and
    written after each change (atomically). A bad file is reported once (``error``) and ignored."""

    path: Path | None = None
    choices: dict[str, ColumnChoice] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> ColumnPrefs:
        prefs = cls(path=path)
        if path is None:
            return prefs
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return prefs
        except OSError as exc:
            prefs.error = f"{path}: {exc.strerror or exc}"
            return prefs
        try:
            data = json.loads(raw)
            tables = data.get("tables") if isinstance(data, dict) else None
            if not isinstance(tables, dict):
                raise ValueError("expected an object with a 'tables' object")
            for name, value in tables.items():
                prefs.choices[str(name)] = ColumnChoice.from_json(value)
        except (ValueError, AttributeError) as exc:
            prefs.choices.clear()
            prefs.error = f"{path}: {exc} (ignored; it is rewritten when you change the columns)"
        return prefs

    def get(self, table: str) -> ColumnChoice | None:
        return self.choices.get(table)

    def set(self, table: str, choice: ColumnChoice) -> str | None:
        """Remember ``choice``; save it when there is a file. Returns an error line, or None."""
        self.choices[table] = choice
        if self.path is None:
            return None
        data = {"version": 1, "tables": {k: v.to_json() for k, v in sorted(self.choices.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            return f"cannot save the columns to {self.path}: {exc.strerror or exc}"
        return None
