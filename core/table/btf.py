"""A minimal reader of the kernel's BTF (``/sys/kernel/btf/vmlinux``): struct member offsets (pure Python).

Enough to answer ``member_offset("sock_common", "skc_net")`` or ``member_offset("net", "ns.inum")`` in
bytes, as the kernel running now lays them out, so that a kernel-side filter can follow a pointer
(docs/kernel-facts.md §3, "The socket's network namespace"). The file: a header (magic 0xEB9F, version
1, hdr_len, then the offsets and lengths of the type and string sections, relative to the header's
end), the types (ids from 1, in order: a 12-byte ``btf_type`` {name_off, info = vlen | kind << 24 |
kind_flag << 31, size/type} followed by a kind-dependent tail) and NUL-terminated names. A STRUCT /
UNION member is {name_off, type, offset}: the offset is in bits (with kind_flag set, its low 24 bits;
the high 8 are a bitfield's size). TYPEDEF / CONST / VOLATILE / RESTRICT / TYPE_TAG name another type
and are followed through; anonymous struct / union members are searched (C's rule).

`Btf.load()` parses the file once per process (about 0.3 s for a 5 MB vmlinux BTF; cached);
anything missing or malformed raises `BtfError` with one line.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

from sockmon.core.errors import SockmonError

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F
# kinds (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_QUALIFIERS = frozenset((TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG))
# bytes after the 12-byte btf_type: fixed, and per vlen item
_TAIL = {INT: (4, 0), PTR: (0, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8),
         FWD: (0, 0), TYPEDEF: (0, 0), VOLATILE: (0, 0), CONST: (0, 0), RESTRICT: (0, 0), FUNC: (0, 0),
         FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), FLOAT: (0, 0), DECL_TAG: (4, 0),
         TYPE_TAG: (0, 0), ENUM64: (0, 12)}
_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")


class BtfError(SockmonError):
    """BTF that is missing, malformed, or lacks the asked name."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0: not a bitfield


class Btf:
    """The types of one BTF blob, indexed by id and (for named structs, unions, typedefs) by name."""

    _cache: dict[str, Btf] = {}
    _cache_lock = threading.Lock()

    def __init__(self, data: bytes) -> None:
        if len(data) < _HDR.size:
            raise BtfError(f"BTF too short: {len(data)} bytes")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(data)
        if magic != MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x}, expected {MAGIC:#x}; big-endian BTF is not read)")
        if version != 1:
            raise BtfError(f"BTF version {version} (only 1 is read)")
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        if t0 + type_len > len(data) or s0 + str_len > len(data):
            raise BtfError("BTF sections run past the end of the data")
        self._strings = data[s0:s0 + str_len]
        # types[id] = (kind, vlen, kind_flag, name_off, size_or_type, tail offset in data)
        types: list[tuple[int, int, int, int, int, int]] = [(0, 0, 0, 0, 0, 0)]  # id 0 = void
        by_name: dict[tuple[int, int], int] = {}
        pos, end = t0, t0 + type_len
        unpack = _TYPE.unpack_from
        tails = _TAIL
        named = (STRUCT, UNION, TYPEDEF)
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"truncated BTF type at {pos - t0}")
            name_off, info, size_type = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            tail = tails.get(kind)
            if tail is None:
                raise BtfError(f"unknown BTF kind {kind} at type {len(types)}")
            types.append((kind, vlen, info >> 31, name_off, size_type, pos + 12))
            if kind in named and name_off:
                by_name.setdefault((kind, name_off), len(types) - 1)
            pos += 12 + tail[0] + tail[1] * vlen
        if pos != end:
            raise BtfError("BTF type section does not end on a type boundary")
        self._data = data
        self._types = types
        self._by_name = by_name
        self._offsets: dict[tuple[str, str], int] = {}

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        """The BTF of ``path`` (the running kernel's by default), parsed once per process."""
        with cls._cache_lock:
            btf = cls._cache.get(path)
            if btf is None:
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                except OSError as exc:
                    raise BtfError(f"no kernel BTF: {path}: {exc.strerror or exc}") from None
                btf = cls._cache[path] = Btf(data)
            return btf

    def __len__(self) -> int:
        return len(self._types) - 1

    def name(self, off: int) -> str:
        if not 0 <= off < len(self._strings):
            raise BtfError(f"BTF string offset {off} out of range")
        end = self._strings.find(b"\0", off)
        return self._strings[off:end if end >= 0 else None].decode("ascii", "replace")

    def _name_off(self, name: str) -> list[int]:
        """Every offset in the string section where ``name`` starts as a whole string."""
        needle = name.encode() + b"\0"
        out = []
        s = self._strings
        i = s.find(needle)
        while i >= 0:
            if i == 0 or s[i - 1] == 0:
                out.append(i)
            i = s.find(needle, i + 1)
        return out

    def find(self, name: str, kinds: tuple[int, ...] = (STRUCT, UNION, TYPEDEF)) -> int:
        """The type id of the struct (or union, or typedef) called ``name``; BtfError when there is none."""
        for off in self._name_off(name):
            for kind in kinds:
                tid = self._by_name.get((kind, off))
                if tid is not None:
                    return tid
        raise BtfError(f"kernel BTF has no struct or union {name!r}")

    def kind(self, type_id: int) -> int:
        return self._types[type_id][0]

    def resolve(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        for _ in range(64):
            kind, _vlen, _kf, _name, target, _tail = self._types[type_id]
            if kind not in _QUALIFIERS:
                return type_id
            type_id = target
        raise BtfError(f"BTF type chain too long at {type_id}")

    def size(self, type_id: int) -> int:
        """The size in bytes of a type (8 for a pointer on a 64-bit kernel)."""
        type_id = self.resolve(type_id)
        kind, _vlen, _kf, _name, size, tail = self._types[type_id]
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return size
        if kind == PTR:
            return 8
        if kind == ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", self._data, tail)
            return self.size(elem) * nelems
        raise BtfError(f"BTF type {type_id} (kind {kind}) has no size")

    def members(self, type_id: int) -> list[Member]:
        type_id = self.resolve(type_id)
        kind, vlen, kflag, _name, _size, tail = self._types[type_id]
        if kind not in (STRUCT, UNION):
            raise BtfError(f"BTF type {type_id} is not a struct or union (kind {kind})")
        out = []
        for i in range(vlen):
            name_off, tid, off = _MEMBER.unpack_from(self._data, tail + 12 * i)
            bits, bsize = (off & 0xFFFFFF, off >> 24) if kflag else (off, 0)
            out.append(Member(self.name(name_off), tid, bits, bsize))
        return out

    def _member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of ``name`` in a struct / union, looking into anonymous members."""
        for m in self.members(type_id):
            if m.name == name:
                return m.bit_offset, m.type_id
            if not m.name and self.kind(self.resolve(m.type_id)) in (STRUCT, UNION):
                inner = self._member(m.type_id, name)
                if inner is not None:
                    return m.bit_offset + inner[0], inner[1]
        return None

    def member_offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` ("skc_net", "ns.inum": members of nested structs, by name) in the
        struct (or union) ``struct_name``; BtfError when a name is missing or a member is a bitfield."""
        key = (struct_name, path)
        got = self._offsets.get(key)
        if got is not None:
            return got
        tid = self.find(struct_name)
        bits = 0
        where = struct_name
        for part in path.split("."):
            found = self._member(tid, part)
            if found is None:
                raise BtfError(f"kernel BTF: struct {where} has no member {part!r}")
            bits += found[0]
            tid = found[1]
            where = f"{where}.{part}"
        if bits % 8:
            raise BtfError(f"kernel BTF: {struct_name}.{path} is not byte-aligned (bit {bits})")
        self._offsets[key] = bits // 8
        return bits // 8

    def member_type(self, struct_name: str, path: str) -> int:
        """The resolved type id of ``path`` in ``struct_name`` (as `member_offset` finds it)."""
        tid = self.find(struct_name)
        for part in path.split("."):
            found = self._member(tid, part)
            if found is None:
                raise BtfError(f"kernel BTF: struct {struct_name} has no member {path!r}")
            tid = found[1]
        return self.resolve(tid)


@dataclass(frozen=True, slots=True)
class NetnsOffsets:
    """How to go from a ``struct sock *`` to its network namespace's inode number, in this kernel:
    ``*(u32 *)(*(void **)(sk + net) + inum)``."""

    net: int  # offsetof(struct sock, __sk_common.skc_net.net)
    inum: int  # offsetof(struct net, ns.inum)


def netns_offsets(btf: Btf | None = None) -> NetnsOffsets:
    """The offsets of `NetnsOffsets` from the kernel's BTF, checked for the expected shapes (the
    namespace pointer is a pointer, the inode a 4-byte integer); BtfError (one line) otherwise."""
    btf = btf or Btf.load()
    # sk->__sk_common.skc_net is a possible_net_t: typedef struct { struct net *net; }
    net = btf.member_offset("sock", "__sk_common.skc_net.net")
    if btf.kind(btf.member_type("sock", "__sk_common.skc_net.net")) != PTR:
        raise BtfError("kernel BTF: sk->__sk_common.skc_net.net is not a pointer")
    inum = btf.member_offset("net", "ns.inum")
    itype = btf.member_type("net", "ns.inum")
    if btf.kind(itype) != INT or btf.size(itype) != 4:
        raise BtfError("kernel BTF: net->ns.inum is not a 4-byte integer")
    return NetnsOffsets(net, inum)
