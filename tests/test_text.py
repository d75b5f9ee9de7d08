"""core/text.py: untrusted strings reach a terminal with nothing a terminal would act on."""

import re

from hypothesis import given
from hypothesis import strategies as st
from sockmon.core.text import inert, inert_bytes

TERMINAL_ACTS_ON = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def test_escape_sequences_become_visible():
    assert inert("\x1b]0;X\x07") == "\\x1b]0;X\\x07"
    assert inert("\x1b[2J") == "\\x1b[2J"
    assert inert("a\r\nb\tc") == "a\\r\\nb\\tc"
    assert inert("\x9b31m") == "\\x9b31m"  # C1 CSI
    assert inert("abc\u202etxt.exe") == "abc\\u202etxt.exe"


def test_printable_text_is_unchanged():
    for s in ["nginx", "redis-server", "[/x]close", "[bold red]MARK", "Grüße", "进程", ""]:
        assert inert(s) == s


def test_peer_bytes():
    assert inert_bytes(b"+PONG\r\n") == "+PONG\\r\\n"
    assert inert_bytes(b"\xff\x1b[31m") == "\\xff\\x1b[31m"


@given(st.text())
def test_no_output_holds_a_character_a_terminal_acts_on(s):
    assert TERMINAL_ACTS_ON.search(inert(s)) is None


@given(st.binary())
def test_no_bytes_output_holds_a_character_a_terminal_acts_on(b):
    assert TERMINAL_ACTS_ON.search(inert_bytes(b)) is None
