"""`sockmon lab --list` and `sockmon lab NAME [--json]`: run one guided scenario headless.

Each step is printed as it happens (text: the narration and every check; ``--json``: one JSON line per
step), then the run's packet ladder (root: every packet of the scenario's connections, captured on ``lo``
or inside its namespaces; without root one line saying why it is empty), and the last line is the result, with ``--json`` ``{"scenario": NAME, "ok": …, "observed": {…}}``.
Exit status: 0 when every check held, 1 when one failed (or the scenario ended in an error), 2 for bad
input (an unknown name: one line listing the names). SIGINT / SIGTERM stop the scenario at its next wait;
every socket, namespace, link and tracefs instance is released before the command exits (130 / 143).
Never imports Textual.
"""

from __future__ import annotations

import signal
import sys

from sockmon.cli.output import fileno_of_stdout, write_all
from sockmon.core.text import inert


def register(subparsers) -> None:
    p = subparsers.add_parser("lab", help="run a guided scenario (TIME_WAIT, CLOSE_WAIT, linger 0 …) checked "
                              "against the kernel", description="Run one guided TCP scenario on loopback (or in "
                              "private namespaces) and check every promised outcome against the kernel: the "
                              "socket table, tracepoint transitions (root) and counters.")
    p.add_argument("name", nargs="?", metavar="NAME", help="the scenario (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios: name, then a one-line description")
    p.add_argument("--json", action="store_true", help="one JSON line per step, then the result line")
    p.set_defaults(run=run)


def _write(line: str) -> None:
    try:
        write_all(fileno_of_stdout(), (line + "\n").encode("utf-8", "backslashreplace"))
    except (BrokenPipeError, ValueError):  # the reader went away: keep running so cleanup happens
        pass


def _inert_lines(text: str) -> str:
    return "\n".join(inert(line) for line in text.split("\n"))


def _write_ladder(result, as_json: bool) -> None:
    """The run's packet ladder after its steps, before the result line: text, one line per packet
    naming its connection; ``--json``, one ``{"ladder": {...}}`` line each (as ``connect --ladder
    --json``, plus ``client`` / ``server``), then ``{"ladder_end": {...}}`` — or the one line saying why
    it is empty (``{"ladder_unavailable": "..."}``)."""
    if not as_json:
        for line in result.ladder_lines():
            _write(inert(line))
        return
    from sockmon.core.jsonout import keyed_line, ladder_line

    for p in result.ladder:
        _write(ladder_line(p).decode().rstrip("\n"))
    if result.ladder_note is not None and not result.ladder:
        _write(keyed_line("ladder_unavailable", result.ladder_note).decode().rstrip("\n"))
    else:
        _write(keyed_line("ladder_end", {"packets": len(result.ladder), "evicted": result.ladder_evicted,
                                       "kernel_drops": result.ladder_drops}).decode().rstrip("\n"))


def run(args) -> int:
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.scenarios import get, scenarios

    if args.list:
        width = max(len(s.name) for s in scenarios())
        for s in scenarios():
            _write(f"{s.name:<{width}}  {s.summary}")
        return 0
    if not args.name:
        raise BadInput("give a scenario NAME or --list; scenarios: " + ", ".join(s.name for s in scenarios()))
    scenario = get(args.name)  # BadInput (exit 2) for an unknown name, listing the names

    import msgspec

    from sockmon.core.jsonout import encode_lines
    from sockmon.core.lab.scenarios.base import Interrupted
    from sockmon.core.scenarios.runner import KernelContext, run_scenario

    ctx = KernelContext(scenario.name)
    got: list[int] = []

    def on_signal(signum, frame) -> None:  # stop at the scenario's next wait; the runner cleans up
        got.append(signum)
        ctx.stop()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def on_step(step) -> None:
        if args.json:
            _write(encode_lines([{"scenario": step.scenario, "index": step.index, "ok": step.ok,
                                   **msgspec.structs.asdict(step)}]).decode().rstrip("\n"))
        else:
            _write(_inert_lines(step.line()))

    try:
        try:
            result = run_scenario(scenario, on_step, context=ctx)
        except Interrupted:
            signum = got[0] if got else signal.SIGINT
            name = signal.Signals(signum).name
            if args.json:
                _write(encode_lines([{"scenario": scenario.name, "ok": False, "observed": {},
                                      "error": f"interrupted by {name}"}]).decode().rstrip("\n"))
            else:
                print(f"sockmon lab: {scenario.name} interrupted by {name}; everything it made is removed",
                      file=sys.stderr)
            return 128 + signum
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    _write_ladder(result, args.json)
    if args.json:
        out = {"scenario": result.scenario, "ok": result.ok, "observed": result.observed}
        if result.failed:
            out["failed"] = list(result.failed)
        if result.error:
            out["error"] = result.error
        _write(encode_lines([out]).decode().rstrip("\n"))
    else:
        _write(_inert_lines(result.line()))
    return 0 if result.ok else 1
