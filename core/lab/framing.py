"""Sans-IO length-prefix framing: a 4-byte big-endian length, then that many payload bytes.

``FrameDecoder.feed`` accepts any split of the stream and returns the whole frames it completes;
``partial`` describes a frame in progress ("length known = 300, have 3 bytes"); a length above
``max_size`` raises FrameTooLarge and the decoder refuses further input (the stream is out of sync).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sockmon.core.errors import SockmonError

HEADER = struct.Struct(">I")
DEFAULT_MAX = 1 << 20  # 1 MiB


class FrameTooLarge(SockmonError):
    def __init__(self, length: int, max_size: int) -> None:
        super().__init__(f"frame length {length} exceeds the maximum of {max_size} bytes")
        self.length = length
        self.max_size = max_size


def encode_frame(payload: bytes, *, max_size: int = DEFAULT_MAX) -> bytes:
    if len(payload) > max_size:
        raise FrameTooLarge(len(payload), max_size)
    return HEADER.pack(len(payload)) + bytes(payload)


@dataclass(frozen=True, slots=True)
class Partial:
    """A frame in progress: ``length`` is None until the 4 header bytes are in."""

    length: int | None
    have: int  # payload bytes held (or header bytes while length is None)

    def __str__(self) -> str:
        if self.length is None:
            return f"length unknown, have {self.have} of {HEADER.size} header bytes"
        return f"length known = {self.length}, have {self.have} bytes"


class FrameDecoder:
    def __init__(self, max_size: int = DEFAULT_MAX) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.max_size = max_size
        self._buf = bytearray()
        self._length: int | None = None
        self._broken: FrameTooLarge | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._broken is not None:
            raise self._broken
        self._buf += data
        frames: list[bytes] = []
        while True:
            if self._length is None:
                if len(self._buf) < HEADER.size:
                    break
                (length,) = HEADER.unpack_from(self._buf)
                if length > self.max_size:
                    self._broken = FrameTooLarge(length, self.max_size)
                    raise self._broken
                del self._buf[:HEADER.size]
                self._length = length
            if len(self._buf) < self._length:
                break
            frames.append(bytes(self._buf[:self._length]))
            del self._buf[:self._length]
            self._length = None
        return frames

    @property
    def partial(self) -> Partial | None:
        """None when between frames; otherwise what is known about the frame in progress."""
        if self._length is None:
            return Partial(None, len(self._buf)) if self._buf else None
        return Partial(self._length, len(self._buf))

    @property
    def broken(self) -> bool:
        return self._broken is not None
