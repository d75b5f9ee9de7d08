"""`sockmon kill [--yes] [--json] [--netns NAME] FILTER...`: destroy the sockets that match FILTER with
sock_diag SOCK_DESTROY, like ``ss -K`` (core/table/destroy.py).

FILTER is the filter language of ``ls`` and the TUI lists (`sockmon.core.table.filter.parse_filter`) and
must not be empty: an empty filter would match every socket. The matches are listed first (state, both
ends, owner: inert text), then, without ``--yes``, confirmed with y/N on the terminal; with no terminal
on stdin the command refuses. Each socket is named to the kernel by its 4-tuple and cookie, so a socket
that replaced a listed one in the meantime is never touched.

Exit status: 0 every match killed (or already gone), 1 nothing matched or some could not be killed,
2 bad input or not confirmed. ``--json``: one JSON line per socket with its result.
"""

from __future__ import annotations

from sockmon.core.text import inert


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "kill", help="kill the TCP sockets matching a filter (SOCK_DESTROY, like ss -K)",
        description="Kill (SOCK_DESTROY) the TCP sockets that match FILTER, after listing them and asking. "
                    "The owner's next call on a killed socket fails with ECONNABORTED; the peer gets a RST.")
    p.add_argument("filter", nargs="*", metavar="FILTER",
                   help="the filter of `ls` and the TUI lists, e.g. sport:40312, 'established port:5432'; "
                        "required (an empty filter would match every socket); negate a term with ! "
                        "('!time_wait'), or put -- before a filter whose first term starts with -")
    p.add_argument("-y", "--yes", action="store_true", help="kill without asking")
    p.add_argument("--json", action="store_true", help="one JSON object per socket with its result")
    p.add_argument("--netns", dest="kill_netns", metavar="NAME", default=None,
                   help="a named network namespace (/run/netns/NAME) or pid:PID")
    p.set_defaults(run=run)


def describe(sock, owner) -> str:
    """``STATE  local → peer  owner`` in one inert line."""
    from sockmon.cli.ls import fmt_endpoint, owner_cell

    who = owner_cell(owner) if owner is not None else ("(no process: TIME_WAIT / orphaned / not accepted)"
                                                      if not sock.inode else "(owner unknown)")
    return (f"{sock.state_name:<11}  {fmt_endpoint(sock.family, sock.src, sock.sport)} → "
            f"{fmt_endpoint(sock.family, sock.dst, sock.dport)}  {who}")


def select(sockets, text: str):
    """(the sockets FILTER matches, owner_of) with owners looked up only where needed: a filter that never
    asks for an owner (``sport:N dport:P``, a state, an address) is decided without the /proc scan, and
    only its matches get their owners (a cold scan of every process costs about a second at 60k sockets)."""
    from sockmon.core.table.filter import parse_filter
    from sockmon.core.table.owners import OwnerCache

    asked = False

    def no_owner(_sock):
        nonlocal asked
        asked = True
        return None

    pred = parse_filter(text, no_owner)
    matches = [s for s in sockets if pred(s)]
    cache = OwnerCache()
    if asked:  # the filter depends on owners (proc:, pid:, user:, or text that may name a process)
        owners = cache.resolve_sockets(sockets)
        pred = parse_filter(text, lambda s: owners.get(s.inode) if s.inode else None)
        matches = [s for s in sockets if pred(s)]
    else:
        owners = cache.resolve_sockets(matches)
    return matches, lambda s: owners.get(s.inode) if s.inode else None


def _say(line: str, to_stderr: bool) -> None:
    from sockmon.cli.output import fileno_of_stderr, fileno_of_stdout, write_all

    fd = fileno_of_stderr() if to_stderr else fileno_of_stdout()
    write_all(fd, (line + "\n").encode("utf-8", "backslashreplace"))


def run(args) -> int:
    from sockmon.cli.confirm import confirm
    from sockmon.core.errors import BadInput, SockmonError
    from sockmon.core.table.destroy import destroy_many
    from sockmon.core.table.filter import parse_filter
    from sockmon.core.table.snapshot import take_snapshot

    text = " ".join(args.filter).strip()
    if not text:
        raise BadInput("kill needs a FILTER (e.g. `sockmon kill sport:40312`): an empty filter would match "
                       "every socket")
    netns = args.kill_netns if args.kill_netns is not None else getattr(args, "netns", None)
    parse_filter(text, lambda s: None)  # bad text fails here, before any dump or /proc scan
    try:
        snap = take_snapshot(netns=netns, with_info=True)
    except OSError as exc:
        if isinstance(exc, SockmonError):
            raise
        raise SockmonError.from_os_error(exc, "netlink sock_diag dump") from None
    if snap.source != "netlink":
        raise SockmonError(f"cannot kill: {snap.note or 'netlink sock_diag is unavailable'}")
    matches, owner_of = select(snap.sockets, text)
    listing_to_stderr = args.json  # stdout carries only JSON lines then
    if not matches:
        _say(f"sockmon: no socket matches {inert(text)}", True)
        return 1
    n = len(matches)
    noun = "socket" if n == 1 else "sockets"
    _say(f"{'killing' if args.yes else 'would kill'} {n} {noun}:", listing_to_stderr)
    for s in matches:
        _say(f"  {describe(s, owner_of(s))}", listing_to_stderr)
    confirm(f"kill {'this socket' if n == 1 else f'these {n} sockets'}?", yes=args.yes,
            what=f"kill {n} {noun}")
    results = destroy_many(matches, netns)
    killed = failed = 0
    for r in results:
        owner = owner_of(r.socket)
        result = "killed" if r.ok else ("gone" if r.gone else "failed")
        if r.ok:
            killed += 1
        elif not r.gone:
            failed += 1
        if args.json:
            from msgspec.structs import asdict

            from sockmon.cli.output import fileno_of_stdout, write_all
            from sockmon.core.jsonout import record_line, socket_out

            row = asdict(socket_out(r.socket, owner))
            row.update(result=result, errno=r.errno_name, reason=r.reason or None)
            write_all(fileno_of_stdout(), record_line(row))
        else:
            tail = f": {r.reason}" if r.reason else ""
            _say(f"{result:<6}  {describe(r.socket, owner)}{inert(tail)}", False)
    gone = n - killed - failed
    summary = f"sockmon: killed {killed} of {n} {noun}" + (f", {gone} already gone" if gone else "")
    if failed:
        reasons = sorted({r.reason for r in results if not r.ok and not r.gone})
        summary += f"; {failed} not killed: {inert('; '.join(reasons))}"
    _say(summary, True)
    return 1 if failed else 0
