"""framing-split: a 4-byte big-endian length-prefixed record of 300 bytes arrives as 2 / 5 / 297 bytes. TCP
keeps no message boundaries: each recv() returns what the kernel holds (the row's Recv-Q says how much).
The sans-IO decoder's state after each read; a naive one-recv-per-record reader misreads the same stream;
and every other split into three reads (fuzzed, all of them) gives the decoder the same one record."""

from __future__ import annotations

import socket

from sockmon.core.lab.framing import FrameDecoder, encode_frame
from sockmon.core.lab.scenarios.base import Scenario, ScenarioContext, four_tuple_of, reverse

PAYLOAD = bytes((i * 7) % 256 for i in range(300))
PIECES = (2, 5, 297)


def _connection(ctx: ScenarioContext, lst: socket.socket, port: int):
    sender = ctx.tcp_socket()
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sender.connect(("127.0.0.1", port))
    receiver = ctx.accept(lst)
    return sender, receiver, reverse(four_tuple_of(sender))


def _deliver(ctx: ScenarioContext, sender, r_ft, piece: bytes) -> int | None:
    """Send one piece and wait until the kernel holds it in the receiver's queue; the Recv-Q seen."""
    sender.sendall(piece)
    seen = None
    for _ in range(300):
        row = ctx.row(r_ft)
        seen = None if row is None else row.recv_q
        if seen == len(piece):
            break
        ctx.sleep(0.005)
    return seen


def run(ctx: ScenarioContext):
    lst = ctx.listener()
    port = lst.getsockname()[1]
    ctx.watch_port(port)
    wire = encode_frame(PAYLOAD)
    sender, receiver, r = _connection(ctx, lst, port)
    decoder = FrameDecoder()
    offset = 0
    frames: list[bytes] = []
    states = []
    for n in PIECES:
        piece = wire[offset:offset + n]
        offset += n
        queued = _deliver(ctx, sender, r, piece)
        data = receiver.recv(4096)
        frames += decoder.feed(data)
        state = str(decoder.partial) if decoder.partial is not None else f"between frames, {len(frames)} complete"
        states.append(state)
        yield ctx.step("server", f"send({n} bytes) → the kernel holds {queued}; recv(4096) → {len(data)} bytes; "
                       f"decoder: {state}", sockets=[r],
                       why="recv() returns what has arrived, never 'one message'; the decoder keeps what it has",
                       checks=[ctx.check(f"the receiver's queue holds the {n} bytes", queued == n, f"Recv-Q {n}",
                                         f"Recv-Q {queued}", "table"),
                               ctx.check("recv() returned them, no more", len(data) == n, n, len(data), "syscall")],
                       observed={"port": port} if n == PIECES[0] else None)
    yield ctx.step("lab", f"the decoder completed {len(frames)} record of {len(frames[0]) if frames else 0} bytes",
                   checks=[ctx.check("one record, equal to what was sent", frames == [PAYLOAD], "1 × 300 bytes",
                                     f"{len(frames)} × {[len(f) for f in frames]}", "decoder")],
                   observed={"decoder_states": states})

    sender, receiver, r = _connection(ctx, lst, port)
    offset = 0
    naive: list[str] = []
    for n in PIECES:
        _deliver(ctx, sender, r, wire[offset:offset + n])
        offset += n
        data = receiver.recv(4096)  # "one recv() is one record"
        if len(data) < 4:
            naive.append(f"{len(data)} bytes: a truncated header, record dropped")
        else:
            length = int.from_bytes(data[:4], "big")
            naive.append(f"{len(data)} bytes: length field says {length}, got {len(data) - 4} payload bytes")
    yield ctx.step("server", "a naive reader, one recv() per record, on the same 2 / 5 / 297 delivery: "
                   + "; ".join(naive), sockets=[r],
                   why="it assumes message boundaries TCP never promised: wrong lengths, lost and garbled records",
                   checks=[ctx.check("the naive reader never gets the 300-byte record",
                                     not any("length field says 300, got 300" in x for x in naive),
                                     "no intact record", "; ".join(naive), "syscall")],
                   observed={"naive_reads": naive})

    total = len(wire)
    splits = 0
    bad = 0
    for i in range(1, total - 1):  # every split of the stream into three non-empty reads
        for j in range(i + 1, total):
            d = FrameDecoder()
            out = d.feed(wire[:i]) + d.feed(wire[i:j]) + d.feed(wire[j:])
            splits += 1
            bad += out != [PAYLOAD] or d.partial is not None
    yield ctx.step("lab", f"every split of the {total} bytes into three reads ({splits}) fed to a fresh decoder",
                   checks=[ctx.check("the same one record every time", bad == 0, "0 failures", f"{bad} failures",
                                     "decoder")],
                   observed={"splits_checked": splits, "split_failures": bad})


SCENARIO = Scenario(name="framing-split", summary="a 300-byte length-prefixed record delivered as 2 / 5 / 297 bytes "
                    "(and every other split): the decoder's state per read, what a naive reader gets wrong", run=run)
