"""`sockmon opts (--inode N | --pid P --fd F) [--set NAME=VALUE]... [--yes] [--json] [--netns NAME]`:
read — and change — another process's TCP socket options from outside it.

The socket is borrowed with pidfd_getfd (core/lab/foreign.py: root, or the same user where ptrace
allows): the duplicate refers to the owner's own socket, so getsockopt reads what the owner would read
and setsockopt changes the owner's socket. Read: SO_LINGER, SO_KEEPALIVE + TCP_KEEPIDLE / INTVL / CNT,
TCP_USER_TIMEOUT, TCP_NODELAY, SO_SNDBUF / SO_RCVBUF, SO_REUSEADDR. ``--set`` (core/lab/options.py
`parse_set`): ``linger=off|0|N``, ``keepalive=on|off|IDLE,INTVL,CNT``, ``nodelay=on|off``,
``user-timeout=MS``; changes only with ``--yes`` or after a y/N question naming the process, then every
option is read back from the kernel and printed.

``--inode N`` finds the owner through the socket table (`take_snapshot` in ``--netns``, or our own
namespace) and the owner lookup (core/table/owners.py). ``--pid P --fd F`` names the fd directly (the
socket's row is looked up in that process's namespace). Exit status: 0 done, 1 could not (no such
socket / no owner / EPERM), 2 bad input or not confirmed.
"""

from __future__ import annotations

import sys

from sockmon.core.text import inert


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "opts", help="read or change another process's TCP socket options (pidfd_getfd)",
        description="Read (and with --set change) SO_LINGER, keepalive, TCP_USER_TIMEOUT, TCP_NODELAY and "
                    "buffer sizes of any process's TCP socket, through pidfd_getfd (root). Every value shown "
                    "is read back from the kernel.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--inode", type=int, metavar="N", help="the socket's inode (ls --json: inode)")
    who.add_argument("--pid", type=int, metavar="P", help="the owning process (with --fd)")
    p.add_argument("--fd", type=int, metavar="F", help="the socket's fd number in process P")
    p.add_argument("--set", dest="changes", action="append", default=[], metavar="NAME=VALUE",
                   help="linger=off|0|N, keepalive=on|off|IDLE,INTVL,CNT, nodelay=on|off, user-timeout=MS "
                        "(repeatable)")
    p.add_argument("-y", "--yes", action="store_true", help="change without asking")
    p.add_argument("--json", action="store_true", help="one JSON object: the socket and its options")
    p.add_argument("--netns", dest="opts_netns", metavar="NAME", default=None,
                   help="where to look the socket up: a named namespace or pid:PID (default: ours for --inode, "
                        "the process's for --pid)")
    p.set_defaults(run=run)


def _find_row(inode: int, netns):
    """The socket table's record of this inode (None when it is not a TCP socket of that namespace)."""
    from sockmon.core.table.snapshot import take_snapshot

    snap = take_snapshot(netns=netns, with_info=False)
    return next((s for s in snap.sockets if s.inode == inode), None)


def _target(args):
    """(pid, fd, inode, row) of the socket the arguments name; one-line errors for everything else."""
    from sockmon.core.errors import BadInput, SockmonError
    from sockmon.core.lab.foreign import find_socket_fd, socket_inode_of, why_no_options
    from sockmon.core.table.owners import OwnerCache

    netns = args.opts_netns if args.opts_netns is not None else getattr(args, "netns", None)
    if args.inode is not None:
        if args.fd is not None:
            raise BadInput("--fd goes with --pid, not with --inode")
        if args.inode < 0:
            raise BadInput(f"bad inode {args.inode}")
        if args.inode == 0:
            raise BadInput("inode 0 is a socket with no file descriptor (TIME_WAIT, orphaned, or waiting in an "
                           "accept queue): no process holds it, so it has no options to read or change")
        row = _find_row(args.inode, netns)
        if row is None:
            where = f"network namespace {netns!r}" if netns is not None else "this network namespace"
            raise SockmonError(f"no TCP socket with inode {args.inode} in {where} (closed, or another "
                               "namespace: --netns)")
        owner = OwnerCache().resolve([row.inode], [row.uid]).get(row.inode)
        why = why_no_options(row, owner)
        if why is not None:
            raise SockmonError(f"socket inode {row.inode} ({_ends(row)}): {why}")
        return owner.pid, find_socket_fd(owner.pid, row.inode), row.inode, row
    if args.fd is None:
        raise BadInput("--pid needs --fd (the socket's fd number in that process: ls -l /proc/PID/fd)")
    inode = socket_inode_of(args.pid, args.fd)
    try:
        row = _find_row(inode, netns if netns is not None else f"pid:{args.pid}")
    except SockmonError:
        # the process's namespace cannot be entered (not root): most likely it is ours; the options can
        # be read either way, the row only adds the state and the ends
        row = _find_row(inode, None) if netns is None else None
    return args.pid, args.fd, inode, row


def _ends(row) -> str:
    from sockmon.cli.ls import fmt_endpoint

    return (f"{row.state_name} {fmt_endpoint(row.family, row.src, row.sport)} → "
            f"{fmt_endpoint(row.family, row.dst, row.dport)}")


def options_lines(opts) -> list[str]:
    """The options as aligned text lines (what ``sockmon opts`` prints)."""
    lg, ka = opts.linger, opts.keepalive
    if not lg.enabled:
        linger = "off (close returns at once; unsent data goes in the background)"
    elif lg.seconds == 0:
        linger = "on, 0 s (close sends RST, no TIME_WAIT)"
    else:
        linger = f"on, {lg.seconds} s (close blocks up to {lg.seconds} s)"
    keep = (f"on  idle {ka.idle} s, intvl {ka.intvl} s, cnt {ka.cnt} (dead peer after {ka.dead_peer_seconds} s)"
            if ka.enabled else f"off (timers kept: idle {ka.idle} s, intvl {ka.intvl} s, cnt {ka.cnt})")
    ut = opts.user_timeout_ms
    rows = [
        ("SO_LINGER", linger),
        ("SO_KEEPALIVE", keep),
        ("TCP_USER_TIMEOUT", f"{ut} ms" if ut else "0 (the system's retransmission limits decide)"),
        ("TCP_NODELAY", "on (Nagle off)" if opts.nodelay else "off (Nagle on)"),
        ("SO_SNDBUF", f"{opts.sndbuf} bytes"),
        ("SO_RCVBUF", f"{opts.rcvbuf} bytes"),
        ("SO_REUSEADDR", "on" if opts.reuseaddr else "off"),
    ]
    return [f"  {name:<17} {value}" for name, value in rows]


def run(args) -> int:
    from sockmon.cli.confirm import confirm
    from sockmon.cli.output import fileno_of_stdout, write_all
    from sockmon.core.lab.foreign import borrowed_socket, change_options_of
    from sockmon.core.lab.options import parse_set, read_options, require_tcp
    from sockmon.core.table.owners import describe_process

    changes = parse_set(args.changes)  # bad --set values fail before anything is looked up
    pid, fd, inode, row = _target(args)
    proc = describe_process(pid)
    who = (f"{inert(proc.name)} (pid {pid}, user {inert(proc.user)})" if proc is not None else f"pid {pid}")
    head = f"{who} fd {fd}, socket inode {inode}" + (f": {_ends(row)}" if row is not None else "")
    if row is not None and row.state_name == "LISTEN":
        head += "\n  (a listener: the connections it accepts start with these options)"
    after = None
    with borrowed_socket(pid, inode, fd) as dup:
        require_tcp(dup, f"fd {fd} of pid {pid}")
        before = read_options(dup)
    if changes:
        # the question waits for a person: no duplicate is held meanwhile (it would keep the socket open
        # after its owner closed it)
        if not args.json:
            sys.stdout.write(head + "\nnow:\n" + "\n".join(options_lines(before)) + "\n")
            sys.stdout.flush()
        confirm(f"change the socket of {who}, fd {fd}: {changes.describe()}?", yes=args.yes,
                what=f"change the socket options of {who}")
        after = change_options_of(pid, inode, changes, fd)
    if args.json:
        from sockmon.core.jsonout import record_line
        from sockmon.core.records import FAMILY_NAMES

        out = {"pid": pid, "fd": fd, "inode": inode,
               "process": proc.name if proc is not None else None, "user": proc.user if proc is not None else None}
        if row is not None:
            out.update(family=FAMILY_NAMES.get(row.family, str(row.family)), state=row.state_name, src=row.src,
                       sport=row.sport, dst=row.dst, dport=row.dport)
        out["options"] = after if after is not None else before
        if changes:
            out["set"] = changes.describe()
            out["before"] = before
        write_all(fileno_of_stdout(), record_line(out))
        return 0
    if changes:
        print(f"changed ({changes.describe()}); the kernel reads back:")
        print("\n".join(options_lines(after)))
    else:
        print(head)
        print("\n".join(options_lines(before)))
    return 0
