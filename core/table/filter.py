"""Filter text typed in a socket list → a predicate over sockets.

Terms are separated by spaces and must all match; ``-`` or ``!`` in front negates a term.
  ``established`` / ``state:time_wait``   state (names as ``ss`` prints them, case-insensitive)
  ``8080`` / ``:8080`` / ``port:8080``    local or peer port;  ``sport:N`` / ``dport:N`` one side
  ``addr:127.0.0`` / ``src:`` / ``dst:``   address substring
  ``proc:nginx`` / ``pid:1234`` / ``user:www``  owner process
  ``v4`` / ``v6``                          family
  ``est`` (a state-name prefix)            those states, or the text in an address / process name
  anything else                            substring of either address or the process name
Bad terms (``port:http``, ``port:99999``, ``state:nope``, ``color:red``) raise ``BadInput``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from sockmon.core.errors import BadInput
from sockmon.core.records import Process, Socket
from sockmon.core.states import STATE_NAMES, parse_state

Pred = Callable[[Socket], bool]
OwnerOf = Callable[[Socket], Process | None]
KEYS = ("state", "port", "sport", "dport", "addr", "src", "dst", "proc", "pid", "user", "family")


def _port(text: str, key: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise BadInput(f"bad {key} {text!r}: a port is a number 0-65535")
    return int(text)


def _term(term: str, owner_of: OwnerOf) -> Pred:
    key, sep, value = term.partition(":")
    if not sep:
        key, value = "", term
    key = key.lower()
    if sep and key == "" and value:  # ":8080"
        key = "port"
    if sep and key not in KEYS:
        raise BadInput(f"unknown filter key {key!r}: use one of {', '.join(KEYS)}")
    if sep and not value:
        raise BadInput(f"{key}: needs a value")
    if key == "state" or (key == "" and not value.isdigit() and _is_state(value)):
        code = parse_state(value)
        return lambda s: s.state == code
    if key == "" and not value.isdigit() and (prefixed := _state_prefix(value)):
        # as you type "est…": states starting with it, or an address / process containing it
        low = value.lower()

        def state_or_text(s: Socket) -> bool:
            if s.state in prefixed or low in s.src.lower() or low in s.dst.lower():
                return True
            p = owner_of(s)
            return p is not None and low in p.name.lower()

        return state_or_text
    if key == "port" or (key == "" and value.isdigit()):
        port = _port(value, "port")
        return lambda s: s.sport == port or s.dport == port
    if key == "sport":
        port = _port(value, key)
        return lambda s: s.sport == port
    if key == "dport":
        port = _port(value, key)
        return lambda s: s.dport == port
    if key == "family" or (key == "" and value.lower() in ("v4", "v6", "inet", "inet6", "ipv4", "ipv6")):
        v = value.lower()
        if v in ("v4", "4", "inet", "ipv4"):
            fam = socket.AF_INET
        elif v in ("v6", "6", "inet6", "ipv6"):
            fam = socket.AF_INET6
        else:
            raise BadInput(f"bad family {value!r}: v4 or v6")
        return lambda s: s.family == fam
    low = value.lower()
    if key == "addr":
        return lambda s: low in s.src.lower() or low in s.dst.lower()
    if key == "src":
        return lambda s: low in s.src.lower()
    if key == "dst":
        return lambda s: low in s.dst.lower()
    if key == "pid":
        if not value.isdigit():
            raise BadInput(f"bad pid {value!r}: a number")
        pid = int(value)
        return lambda s: (p := owner_of(s)) is not None and p.pid == pid
    if key == "proc":
        return lambda s: (p := owner_of(s)) is not None and low in p.name.lower()
    if key == "user":
        return lambda s: ((p := owner_of(s)) is not None and low in p.user.lower()) or value == str(s.uid)

    def anywhere(s: Socket) -> bool:
        if low in s.src.lower() or low in s.dst.lower():
            return True
        p = owner_of(s)
        return p is not None and low in p.name.lower()

    return anywhere


def _state_prefix(word: str) -> frozenset[int]:
    key = word.strip().upper().replace("-", "_").removeprefix("TCP_")
    if len(key) < 2:
        return frozenset()
    return frozenset(code for code, name in STATE_NAMES.items() if name.startswith(key))


def _is_state(word: str) -> bool:
    try:
        parse_state(word)
    except BadInput:
        return False
    return True


def parse_filter(text: str, owner_of: OwnerOf = lambda s: None) -> Pred | None:
    """None for empty text; raises BadInput with a one-line reason for bad text."""
    preds: list[tuple[bool, Pred]] = []
    for raw in text.split():
        neg = raw[0] in "-!" and len(raw) > 1
        term = raw[1:] if neg else raw
        preds.append((neg, _term(term, owner_of)))
    if not preds:
        return None
    if len(preds) == 1:
        neg, p = preds[0]
        return (lambda s: not p(s)) if neg else p

    def all_match(s: Socket) -> bool:
        for neg, p in preds:
            if p(s) == neg:
                return False
        return True

    return all_match
