"""Guided scenarios of the lab: one module each, registered here in the order `sockmon lab --list` shows.

Adding one: write ``core/lab/scenarios/NAME.py`` with a ``run(ctx)`` generator of steps and
``SCENARIO = Scenario(name=..., summary=..., run=run)``, then add the module to ``_MODULES`` below.
"""

from __future__ import annotations

import importlib

from sockmon.core.errors import BadInput
from sockmon.core.lab.scenarios.base import Scenario

_MODULES = ("time_wait", "close_wait", "linger_abort", "half_close", "backlog_overflow", "keepalive_dead_peer",
            "addr_in_use", "refused_and_timeout", "blocking_echo_stall", "epoll_level_vs_edge",
            "framing_split", "short_writes")
_REGISTRY: dict[str, Scenario] = {}
_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _MODULES:
        register(importlib.import_module(f"sockmon.core.lab.scenarios.{mod}").SCENARIO)


def register(scenario: Scenario) -> None:
    """Add a scenario (a later one with the same name replaces it: tests use this as a seam)."""
    _REGISTRY[scenario.name] = scenario


def scenarios() -> list[Scenario]:
    _load()
    return list(_REGISTRY.values())


def names() -> list[str]:
    return [s.name for s in scenarios()]


def get(name: str) -> Scenario:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInput(f"unknown scenario {name!r}; scenarios: {', '.join(names())}") from None
