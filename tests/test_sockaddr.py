import ctypes
import socket

import pytest
from sockmon.core.errors import BadInput
from sockmon.core.lab.sockaddr import sockaddr_bytes, sockaddr_fields, sockaddr_of

_libc = ctypes.CDLL(None, use_errno=True)


def kernel_sockname(sock: socket.socket) -> bytes:
    """The raw sockaddr bytes getsockname(2) writes: the kernel's own layout to compare against."""
    buf = ctypes.create_string_buffer(128)
    size = ctypes.c_uint32(128)
    assert _libc.getsockname(sock.fileno(), buf, ctypes.byref(size)) == 0
    return buf.raw[:size.value]


def test_sockaddr_in_127_0_0_1_8080():
    raw = sockaddr_bytes(socket.AF_INET, "127.0.0.1", 8080)
    assert raw.hex(" ") == "02 00 1f 90 7f 00 00 01 00 00 00 00 00 00 00 00"
    fields = sockaddr_fields(socket.AF_INET, "127.0.0.1", 8080)
    assert [(f.name, f.offset, len(f.raw)) for f in fields] == [
        ("sin_family", 0, 2), ("sin_port", 2, 2), ("sin_addr", 4, 4), ("sin_zero", 8, 8)]
    assert fields[1].hex == "1f 90" and "big-endian" in fields[1].meaning
    assert "AF_INET" in fields[0].meaning


def test_sockaddr_in6_layout():
    raw = sockaddr_bytes(socket.AF_INET6, "::1", 8080, flowinfo=0x12345, scope_id=3)
    assert len(raw) == 28
    assert raw[0:2] == b"\x0a\x00" and raw[2:4] == b"\x1f\x90"
    assert raw[4:8] == b"\x00\x01\x23\x45"
    assert raw[8:24] == bytes(15) + b"\x01"
    assert raw[24:28] == b"\x03\x00\x00\x00"
    assert [f.offset for f in sockaddr_fields(socket.AF_INET6, "::1", 1)] == [0, 2, 4, 8, 24]


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_matches_the_kernels_bytes(family, host):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    ours = b"".join(f.raw for f in sockaddr_of(s))
    assert ours == kernel_sockname(s)
    assert ours == sockaddr_bytes(family, host, port)
    s.close()


def test_bad_inputs():
    with pytest.raises(BadInput):
        sockaddr_bytes(socket.AF_INET, "::1", 80)
    with pytest.raises(BadInput):
        sockaddr_bytes(socket.AF_INET6, "127.0.0.1.1", 80)
    with pytest.raises(BadInput):
        sockaddr_bytes(socket.AF_INET, "127.0.0.1", 70000)
    with pytest.raises(BadInput):
        sockaddr_bytes(socket.AF_UNIX, "x", 1)
