"""`run_scenario`: a scenario's steps, each checked against the kernel, and one `Result`.

`KernelContext` is the scenario context with the kernel view: the socket table (netlink sock_diag,
`take_snapshot`), the transitions of the scenario's ports from the tracepoint (root: a private tracefs
instance, removed with the context) and the TcpExt / Tcp counters. Without root the transitions come
from the successive snapshots the checks read (`ScenarioContext.path`).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

from sockmon.core.errors import SockmonError
from sockmon.core.lab.scenarios import get
from sockmon.core.lab.scenarios.base import Interrupted, Result, Scenario, ScenarioContext, Step
from sockmon.core.records import Socket, Transition
from sockmon.core.table import summary
from sockmon.core.table.snapshot import take_snapshot
from sockmon.core.table.tracepoint import TracingUnavailable, TransitionTracer, tracing_available

MAX_TRANSITIONS = 10_000  # transitions a run keeps (its own ports only); oldest dropped beyond


class KernelContext(ScenarioContext):
    def __init__(self, scenario: str, *, use_tracepoint: bool = True) -> None:
        super().__init__(scenario)
        self._use_tracepoint = use_tracepoint and tracing_available()[0]
        self._tracers: dict[int, TransitionTracer] = {}
        self._transitions: list[Transition] = []
        self.tracing = self._use_tracepoint

    def table(self, port: int | None = None, *, netns: str | None = None) -> list[Socket]:
        return list(take_snapshot(netns=netns, port=port, with_info=False).sockets)

    def watch_port(self, port: int, *, netns: str | None = None) -> None:
        super().watch_port(port, netns=netns)  # the packet capture (the ladder)
        if not self._use_tracepoint or port in self._tracers:
            return
        with self._lock:
            if self.closed:
                raise Interrupted("the scenario was stopped")
        try:
            tracer = TransitionTracer(port=port, buffer_kb=512)
        except (TracingUnavailable, OSError):
            self.tracing = self._use_tracepoint = False
            return
        with self._lock:
            self._tracers[port] = tracer
            if self.closed:  # stopped while the instance was being made
                self._tracers.pop(port)
                tracer.close()
                raise Interrupted("the scenario was stopped")

    def transitions(self) -> list[Transition]:
        for tracer in list(self._tracers.values()):
            for batch in tracer.batches():
                self._transitions += batch
        if len(self._transitions) > MAX_TRANSITIONS:
            del self._transitions[:-MAX_TRANSITIONS]
        seen: set = set()
        out = []
        for t in sorted(self._transitions, key=lambda t: t.ts):  # two tracers may both see one
            k = (t.ts, t.src, t.sport, t.dst, t.dport, t.old, t.new)
            if k not in seen:
                seen.add(k)
                out.append(t)
        return out

    def counters(self, *, netns: str | None = None) -> dict[str, int]:
        return summary.read_tcp_counters(netns)

    def close_kernel_view(self) -> None:
        with self._lock:
            tracers, self._tracers = list(self._tracers.values()), {}
        for tracer in tracers:
            tracer.close()


def run_scenario(scenario: Scenario | str, on_step: Callable[[Step], Any] = lambda step: None, *,
                 context: KernelContext | None = None, use_tracepoint: bool = True) -> Result:
    """Run one scenario: each step handed to ``on_step`` as it happens; the context (every socket,
    thread, namespace, link and tracefs instance) released before this returns or raises.

    A failed check or an error ends in ``Result.ok == False``; `Interrupted` / KeyboardInterrupt /
    SystemExit propagate after the cleanup.
    """
    if isinstance(scenario, str):
        scenario = get(scenario)
    if scenario.needs_root and os.geteuid() != 0:
        return Result(scenario=scenario.name, ok=False, observed={}, error="this scenario needs root")
    ctx = context or KernelContext(scenario.name, use_tracepoint=use_tracepoint)
    observed: dict[str, Any] = {}
    failed: list[str] = []
    error = None
    try:
        for step in scenario.run(ctx):
            observed.update(step.observed)
            failed += [f"step {step.index}: {c.what} (expected {c.expected}, kernel says {c.observed})"
                       for c in step.checks if not c.ok]
            on_step(step)
    except (TimeoutError, SockmonError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a scenario bug is a failed run, reported with its place
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__}: {exc} ({os.path.basename(tb.filename)}:{tb.lineno})"
    finally:
        problems = ctx.close()
    if problems:
        error = "; ".join(filter(None, [error, "cleanup: " + "; ".join(problems)]))
    ok = not failed and error is None
    observed["transitions_from"] = "tracepoint" if ctx.tracing else "snapshots"
    packets, evicted, drops = ctx.ladder()  # the captures were stopped by close()
    observed["packets"] = len(packets)
    note = ctx.ladder_note if not packets else None
    if note is None and not packets and ctx.capture_packets:
        note = "packet ladder empty: the scenario watched no port" if not ctx.captured_ports else \
            "packet ladder empty: no packet of the watched ports was captured"
    return Result(scenario=scenario.name, ok=ok, observed=observed, failed=tuple(failed), error=error,
                  ladder=tuple(packets), ladder_note=note, ladder_evicted=evicted, ladder_drops=drops)


__all__ = ["Interrupted", "KernelContext", "run_scenario"]
