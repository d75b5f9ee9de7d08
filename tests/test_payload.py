"""core/lab/payload.py: typed text → wire bytes (escapes, line endings, pastes, hex)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sockmon.core.errors import BadInput
from sockmon.core.lab.payload import LineEnding, parse_hex, text_lines, unescape


def test_escapes():
    assert unescape(r"PING\r\n") == b"PING\r\n"
    assert unescape(r"a\tb\\c\x00\xff\0") == b"a\tb\\c\x00\xff\x00"
    assert unescape("Grüße") == "Grüße".encode()


@pytest.mark.parametrize("bad", [r"\q", "end\\", r"\x4", r"\xZZ"])
def test_bad_escapes_are_refused_in_one_line(bad):
    with pytest.raises(BadInput) as e:
        unescape(bad)
    assert "\n" not in str(e.value)


def test_line_endings_and_pastes():
    assert text_lines("PING") == b"PING\r\n"
    assert text_lines("PING", LineEnding.LF) == b"PING\n"
    assert text_lines("PING", LineEnding.NONE) == b"PING"
    paste = "GET / HTTP/1.0\nHost: x\n\n"
    assert text_lines(paste) == b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
    assert text_lines("a\r\nb", LineEnding.LF) == b"a\nb\n"
    assert text_lines(r"a\tb", escapes=True) == b"a\tb\r\n"
    assert text_lines(r"a\tb") == b"a\\tb\r\n"
    assert LineEnding.CRLF.next() is LineEnding.NONE


def test_hex():
    assert parse_hex("50 49 4e 47") == b"PING"
    assert parse_hex("50:49") == b"PI"
    for bad in ["", "zz", "5"]:
        with pytest.raises(BadInput):
            parse_hex(bad)


@given(st.binary())
def test_every_byte_string_survives_an_escape_round_trip(data):
    assert unescape("".join(f"\\x{b:02x}" for b in data)) == data
