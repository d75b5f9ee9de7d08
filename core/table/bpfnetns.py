"""A kernel-side network-namespace filter for `sock:inet_sock_set_state`, as a BPF program (root).

The tracepoint carries the socket pointer (``skaddr``) but no namespace. This kernel has neither
kprobe_events nor event probes (``CONFIG_EPROBE_EVENTS`` unset: an ``e:`` line written to
``dynamic_events`` is refused with EINVAL although tracefs' README lists the syntax), so a tracefs
event cannot follow the pointer. A BPF program attached to the tracepoint can
(docs/kernel-facts.md §3, "The socket's network namespace"):

    net  = *(u64 *)(skaddr + NET)    NET  = offsetof(struct sock, __sk_common.skc_net.net)
    inum = *(u32 *)(net + INUM)      INUM = offsetof(struct net, ns.inum)

(both from the kernel's BTF, core/table/btf.py), both read with ``bpf_probe_read_kernel``, then
compared with the wanted namespace's inode (``os.stat('/proc/self/ns/net').st_ino``). The programs are
hand-assembled here (no compiler, no new dependency). Each is attached through one counting perf
event on the tracepoint (CPU 0: a tracepoint's programs run for every CPU's firing once one is
attached) and always returns 1 — a tracepoint's programs' results are ANDed (measured: a second
program returning 0 silenced the first's perf event), so returning 0 would hide the tracepoint from
every other perf user while sockmon runs. The ftrace ring buffers (tracefs instances) are not affected
either way.

- `NetnsCounter`: adds 1 to a BPF array map for each transition of a socket in the namespace (the proof
  of the offsets in tests/test_netns_probe.py; "how many transitions did namespace X have").
- `NetnsRing`: copies each such transition's record (with ``bpf_ktime_get_ns``, CLOCK_MONOTONIC: the
  ``mono`` clock of the tracefs reader) into a BPF ring buffer (one ring for every CPU, memory-mapped,
  read here without a syscall); a full ring counts a loss in the array map instead. `read(max_records)`
  returns ``(ts_ns, record bytes)`` in the layout of the event's ``format`` file (the 8 bytes of common
  fields zeroed but ``common_type``), which core/table/traceraw.py decodes.

Everything (programs, maps, perf events, mappings) is held by file descriptors: `close()`, or the
process ending however it ends (SIGKILL included), detaches it — nothing can be left in the kernel,
unlike a tracefs instance or a dynamic event.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import platform
import struct

from sockmon.core.errors import SockmonError
from sockmon.core.table.btf import BtfError, netns_offsets

_SYS = {"x86_64": (321, 298), "aarch64": (280, 241)}  # (bpf, perf_event_open)
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD = 0, 1, 5, 15
PROG_INFO_SIZE, PROG_INFO_RECURSION_MISSES = 232, 208  # struct bpf_prog_info (Linux ≥ 5.12)
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_RINGBUF = 2, 27
BPF_PROG_TYPE_TRACEPOINT = 5
PERF_TYPE_TRACEPOINT = 2
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_FLAG_FD_CLOEXEC = 1 << 3
HELPER_MAP_LOOKUP_ELEM, HELPER_KTIME_GET_NS, HELPER_PROBE_READ_KERNEL, HELPER_RINGBUF_OUTPUT = 1, 5, 113, 130
RINGBUF_BUSY, RINGBUF_DISCARD = 1 << 31, 1 << 30
RINGBUF_HDR = 8
_INSN = struct.Struct("<BBhi")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
# opcodes (include/uapi/linux/bpf.h, bpf_common.h)
LDX_DW, LDX_W, LDX_H, STX_DW, ST_W = 0x79, 0x61, 0x69, 0x7B, 0x62
MOV_X, MOV_K, ADD_K, LD_IMM64, XADD_DW = 0xBF, 0xB7, 0x07, 0x18, 0xDB
CALL, EXIT, JNE_K, JEQ_K, JNE32_K = 0x85, 0x95, 0x55, 0x15, 0x56
PSEUDO_MAP_FD = 1


class BpfUnavailable(SockmonError):
    """The BPF namespace filter cannot run here (one line: why)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _Asm:
    """A tiny BPF assembler: instructions, forward jumps to named labels."""

    def __init__(self) -> None:
        self.insns: list[list] = []  # [code, dst, src, off | label, imm]
        self.labels: dict[str, int] = {}

    def __call__(self, code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.insns.append([code, dst, src, off, imm])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def ld_map(self, reg: int, fd: int) -> None:
        self(LD_IMM64, reg, PSEUDO_MAP_FD, 0, fd)
        self(0)

    def bytes(self) -> bytes:
        out = []
        for pc, (code, dst, src, off, imm) in enumerate(self.insns):
            if isinstance(off, str):
                off = self.labels[off] - pc - 1
            out.append(_INSN.pack(code, (src << 4) | dst, off, imm))
        return b"".join(out)


def _netns_check(a: _Asm, skaddr_offset: int, net: int, inum: int, inode: int) -> None:
    """r6 = ctx; jump to "out" unless the socket at ``ctx + skaddr_offset`` is in namespace ``inode``."""
    if not 8 <= skaddr_offset < 4096 or skaddr_offset % 8:
        raise ValueError(f"skaddr offset {skaddr_offset}: a tracepoint program reads aligned words from 8")
    want = inode - (1 << 32) if inode >= 1 << 31 else inode  # the 32-bit immediate of a JMP32 compare
    a(MOV_X, 6, 1)  # r6 = ctx (the event's record)
    a(LDX_DW, 3, 6, skaddr_offset)  # r3 = ctx->skaddr
    a(ADD_K, 3, imm=net)  # r3 = &sk->__sk_common.skc_net.net
    a(MOV_X, 1, 10), a(ADD_K, 1, imm=-8), a(MOV_K, 2, imm=8)
    a(CALL, imm=HELPER_PROBE_READ_KERNEL)  # *(fp - 8) = the socket's struct net *
    a(JNE_K, 0, off="out")
    a(LDX_DW, 3, 10, -8), a(ADD_K, 3, imm=inum)  # r3 = &net->ns.inum
    a(MOV_X, 1, 10), a(ADD_K, 1, imm=-16), a(MOV_K, 2, imm=4)
    a(CALL, imm=HELPER_PROBE_READ_KERNEL)  # *(fp - 16) = inum
    a(JNE_K, 0, off="out")
    a(LDX_W, 0, 10, -16)
    a(JNE32_K, 0, off="out", imm=want)  # another namespace


def _count(a: _Asm, map_fd: int, key: int) -> None:
    """Atomically add 1 to element ``key`` of the array map ``map_fd`` (clobbers r0-r5)."""
    a.ld_map(1, map_fd)
    a(ST_W, 10, 0, -24, key), a(MOV_X, 2, 10), a(ADD_K, 2, imm=-24)
    a(CALL, imm=HELPER_MAP_LOOKUP_ELEM)
    a(JEQ_K, 0, off="out")
    a(MOV_K, 1, imm=1), a(XADD_DW, 0, 1, 0)


def _finish(a: _Asm) -> bytes:
    a.label("out")
    a(MOV_K, 0, imm=1)
    a(EXIT)
    return a.bytes()


def counter_program(skaddr_offset: int, net: int, inum: int, inode: int, map_fd: int) -> bytes:
    """Add 1 to element 0 of the array map ``map_fd`` for each transition of a socket in ``inode``."""
    a = _Asm()
    _netns_check(a, skaddr_offset, net, inum, inode)
    _count(a, map_fd, 0)
    return _finish(a)


def ring_program(skaddr_offset: int, net: int, inum: int, inode: int, ring_fd: int, lost_fd: int,
                 record_size: int, protocol: tuple[int, int] | None = None,
                 ports: tuple[int, int, int] | None = None) -> bytes:
    """Copy ``(ktime ns, record[8:record_size])`` of each transition of a socket in ``inode`` to the ring
    buffer ``ring_fd`` (a full ring: element 0 of ``lost_fd`` += 1). ``protocol``: (offset of the u16
    field, value) to keep; ``ports``: (offset of sport, offset of dport, port) to keep either."""
    size = (record_size + 7) & ~7
    if not 16 <= size <= 256:
        raise ValueError(f"record size {record_size}: 16..256 bytes")
    a = _Asm()
    _netns_check(a, skaddr_offset, net, inum, inode)
    if protocol is not None:
        a(LDX_H, 0, 6, protocol[0]), a(JNE_K, 0, off="out", imm=protocol[1])
    if ports is not None:
        a(LDX_H, 0, 6, ports[0]), a(JEQ_K, 0, off="port", imm=ports[2])
        a(LDX_H, 0, 6, ports[1]), a(JNE_K, 0, off="out", imm=ports[2])
        a.label("port")
    base = -(24 + size)  # the sample on the stack: [ktime][record bytes 8 .. size]
    a(CALL, imm=HELPER_KTIME_GET_NS), a(STX_DW, 10, 0, base)
    for off in range(8, size, 8):
        a(LDX_DW, 0, 6, off), a(STX_DW, 10, 0, base + off)
    a.ld_map(1, ring_fd)
    a(MOV_X, 2, 10), a(ADD_K, 2, imm=base), a(MOV_K, 3, imm=size), a(MOV_K, 4, imm=0)
    a(CALL, imm=HELPER_RINGBUF_OUTPUT)
    a(JEQ_K, 0, off="out")
    _count(a, lost_fd, 0)
    return _finish(a)


class _Attached:
    """Programs on `sock:inet_sock_set_state` through a perf event; every fd closed by `close()`."""

    def __init__(self, *, tracefs: str = "/sys/kernel/tracing") -> None:
        nums = _SYS.get(platform.machine())
        if nums is None:
            raise BpfUnavailable(f"BPF namespace filter: unsupported machine {platform.machine()}")
        self._bpf_nr, self._perf_nr = nums
        self._libc = _libc()
        self._fds: list[int] = []
        try:
            self.offsets = netns_offsets()
        except BtfError as exc:
            raise BpfUnavailable(str(exc)) from None
        event = os.path.join(tracefs, "events", "sock", "inet_sock_set_state")
        try:
            with open(os.path.join(event, "id"), encoding="ascii") as fh:
                self.event_id = int(fh.read())
            with open(os.path.join(event, "format"), encoding="ascii") as fh:
                self.format_text = fh.read()
        except (OSError, ValueError) as exc:
            raise BpfUnavailable(f"no sock:inet_sock_set_state tracepoint: {exc}") from None
        from sockmon.core.table.traceraw import _fields

        self.fields = _fields(self.format_text)
        sk = self.fields.get("skaddr")
        if sk is None or sk.size != 8:
            raise BpfUnavailable("the tracepoint's format has no 8-byte skaddr field")
        self.skaddr_offset = sk.offset

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def _bpf(self, cmd: int, attr: bytes, what: str) -> int:
        buf = ctypes.create_string_buffer(attr, 128)
        fd = self._libc.syscall(self._bpf_nr, cmd, buf, 128)
        if fd < 0:
            raise BpfUnavailable(f"{what}: {os.strerror(ctypes.get_errno())}")
        return fd

    def _map(self, kind: int, key: int, value: int, entries: int, what: str) -> int:
        return self._keep(self._bpf(BPF_MAP_CREATE, struct.pack("<IIII", kind, key, value, entries), what))

    def _lookup(self, map_fd: int, key: int) -> int:
        k = ctypes.create_string_buffer(_U32.pack(key), 4)
        v = ctypes.create_string_buffer(8)
        self._bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(k),
                                                   ctypes.addressof(v), 0), "reading a BPF map")
        return _U64.unpack(v.raw)[0]

    def _attach(self, insns: bytes) -> None:
        buf = ctypes.create_string_buffer(insns, len(insns))
        lic = ctypes.create_string_buffer(b"GPL")  # bpf_probe_read_kernel is GPL-only
        log = ctypes.create_string_buffer(65536)
        attr = ctypes.create_string_buffer(128)
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_TRACEPOINT, len(insns) // 8,
                         ctypes.addressof(buf), ctypes.addressof(lic), 1, len(log), ctypes.addressof(log))
        struct.pack_into("16s", attr, 48, b"sockmon_netns")
        prog = self._libc.syscall(self._bpf_nr, BPF_PROG_LOAD, attr, 128)
        if prog < 0:
            err = ctypes.get_errno()
            tail = log.value.decode("ascii", "replace").strip().splitlines()[-1:] or [""]
            raise BpfUnavailable(f"BPF program refused: {os.strerror(err)}" + (f" ({tail[0]})" if tail[0] else ""))
        self._keep(prog)
        self._prog = prog
        pattr = ctypes.create_string_buffer(112)
        struct.pack_into("<IIQ", pattr, 0, PERF_TYPE_TRACEPOINT, 112, self.event_id)
        struct.pack_into("<Q", pattr, 40, 1)  # disabled until the program is attached
        fd = self._libc.syscall(self._perf_nr, pattr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
        if fd < 0:
            raise BpfUnavailable(f"perf_event_open on the tracepoint: {os.strerror(ctypes.get_errno())}")
        self._keep(fd)
        if self._libc.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog) != 0:
            raise BpfUnavailable(f"attaching the BPF program: {os.strerror(ctypes.get_errno())}")
        if self._libc.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0:
            raise BpfUnavailable(f"enabling the perf event: {os.strerror(ctypes.get_errno())}")

    @property
    def misses(self) -> int:
        """Firings the kernel did not run the program for: a tracepoint program is not re-entered on a CPU
        where a BPF program is running (a softirq's transition while a task's is being filtered)."""
        if not self._fds:
            return 0
        info = ctypes.create_string_buffer(PROG_INFO_SIZE)
        self._bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", self._prog, PROG_INFO_SIZE, ctypes.addressof(info)),
                  "reading the BPF program's info")
        return _U64.unpack_from(info.raw, PROG_INFO_RECURSION_MISSES)[0]

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in reversed(fds):  # the perf event (detaches the program) first
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NetnsCounter(_Attached):
    """Counts `sock:inet_sock_set_state` firings for sockets in the network namespace ``inode``."""

    def __init__(self, inode: int, **kw) -> None:
        super().__init__(**kw)
        self.inode = int(inode)
        try:
            self._counts = self._map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "BPF array map")
            self._attach(counter_program(self.skaddr_offset, self.offsets.net, self.offsets.inum, self.inode,
                                         self._counts))
        except BaseException:
            self.close()
            raise

    @property
    def count(self) -> int:
        """Transitions of the namespace's sockets since the start (every CPU)."""
        return self._lookup(self._counts, 0) if self._fds else 0


class NetnsRing(_Attached):
    """The records of the transitions of sockets in the namespace ``inode`` (TCP only; optionally of one
    port), through a BPF ring buffer of ``size`` bytes (a power of two, ≥ a page)."""

    def __init__(self, inode: int, *, size: int = 16 << 20, port: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.inode = int(inode)
        page = mmap.PAGESIZE
        size = max(page, 1 << (max(int(size), page) - 1).bit_length())
        self.size = size
        self._cons: mmap.mmap | None = None
        self._data: mmap.mmap | None = None
        try:
            need = [n for n in ("protocol", "sport", "dport") if n not in self.fields]
            if need:
                raise BpfUnavailable(f"the tracepoint's format lacks {', '.join(need)}")
            self.record_size = max(f.offset + f.size for f in self.fields.values())
            self._ring = self._map(BPF_MAP_TYPE_RINGBUF, 0, 0, size, "BPF ring buffer")
            self._lost = self._map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "BPF array map")
            f = self.fields
            self._attach(ring_program(
                self.skaddr_offset, self.offsets.net, self.offsets.inum, self.inode, self._ring, self._lost,
                self.record_size, protocol=(f["protocol"].offset, 6),
                ports=None if port is None else (f["sport"].offset, f["dport"].offset, int(port))))
            self._cons = mmap.mmap(self._ring, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            # the producer page, then the data mapped twice (a record that wraps reads as one piece)
            self._data = mmap.mmap(self._ring, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except BaseException:
            self.close()
            raise
        self._page = page
        self._mask = size - 1
        ctype = f["common_type"]
        self._prefix = struct.pack("=H" if ctype.size == 2 else "=I", self.event_id).ljust(8, b"\0")

    @property
    def lost(self) -> int:
        """Transitions lost since the start: records the full ring could not take, and firings the
        program was not run for (`misses`: any namespace's, so an upper bound of ours)."""
        return self._lookup(self._lost, 0) + self.misses if self._fds else 0

    @property
    def buffer(self) -> mmap.mmap | None:
        """The ring's memory (the producer page, then the data twice): `peek`'s offsets index it."""
        return self._data

    def peek(self, max_records: int) -> tuple[list[int], int] | None:
        """The offsets in `buffer` of up to ``max_records`` waiting samples, oldest first — each a u64
        ``bpf_ktime_get_ns`` then the record's bytes from 8 on, in the event's ``format`` layout — and the
        position to `release` once they are decoded (their space is the kernel's again after that);
        None when none was waiting."""
        cons_map, data = self._cons, self._data
        if cons_map is None or data is None:
            return None
        cons = _U64.unpack_from(cons_map, 0)[0]
        prod = _U64.unpack_from(data, 0)[0]
        if cons >= prod:
            return None
        out: list[int] = []
        append = out.append
        base = self._page + RINGBUF_HDR
        mask = self._mask
        size_at = _U32.unpack_from
        flags = RINGBUF_BUSY | RINGBUF_DISCARD
        n = 0
        while cons < prod and n < max_records:
            at = base + (cons & mask)
            word = size_at(data, at - RINGBUF_HDR)[0]
            if word & RINGBUF_BUSY:  # reserved, not committed yet
                break
            if not word & RINGBUF_DISCARD:
                append(at)
                n += 1
            cons += ((word & ~flags) + RINGBUF_HDR + 7) & ~7
        return out, cons

    def release(self, position: int) -> None:
        if self._cons is not None:
            _U64.pack_into(self._cons, 0, position)

    def read(self, max_records: int) -> list[tuple[int, bytes]] | None:
        """Up to ``max_records`` waiting records, oldest first, as (ktime ns, record bytes in the event's
        ``format`` layout, common fields zeroed but ``common_type``); None when none was waiting."""
        got = self.peek(max_records)
        if got is None:
            return None
        data = self._data
        size = self.record_size
        out = [(_U64.unpack_from(data, at)[0], self._prefix + data[at + 8:at + size]) for at in got[0]]
        self.release(got[1])
        return out

    def close(self) -> None:
        for m in (self._cons, self._data):
            if m is not None:
                m.close()
        self._cons = self._data = None
        super().close()
