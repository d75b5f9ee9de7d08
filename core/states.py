"""TCP state and timer codes as the kernel numbers them (include/net/tcp_states.h, inet_diag)."""

from __future__ import annotations

ESTABLISHED = 1
SYN_SENT = 2
SYN_RECV = 3
FIN_WAIT1 = 4
FIN_WAIT2 = 5
TIME_WAIT = 6
CLOSE = 7
CLOSE_WAIT = 8
LAST_ACK = 9
LISTEN = 10
CLOSING = 11
NEW_SYN_RECV = 12

STATE_NAMES: dict[int, str] = {
    ESTABLISHED: "ESTABLISHED",
    SYN_SENT: "SYN_SENT",
    SYN_RECV: "SYN_RECV",
    FIN_WAIT1: "FIN_WAIT1",
    FIN_WAIT2: "FIN_WAIT2",
    TIME_WAIT: "TIME_WAIT",
    CLOSE: "CLOSE",
    CLOSE_WAIT: "CLOSE_WAIT",
    LAST_ACK: "LAST_ACK",
    LISTEN: "LISTEN",
    CLOSING: "CLOSING",
    NEW_SYN_RECV: "NEW_SYN_RECV",
}
STATE_CODES: dict[str, int] = {name: code for code, name in STATE_NAMES.items()}
ALL_STATES_MASK = 0xFFFF  # every bit: the kernel ignores bits of states that do not exist

# Timer kinds in inet_diag_msg.idiag_timer, named as `ss -o` names them.
TIMER_NONE = 0
TIMER_ON = 1  # retransmit
TIMER_KEEPALIVE = 2
TIMER_TIMEWAIT = 3
TIMER_PERSIST = 4  # zero-window probe
TIMER_NAMES: dict[int, str] = {
    TIMER_ON: "on",
    TIMER_KEEPALIVE: "keepalive",
    TIMER_TIMEWAIT: "timewait",
    TIMER_PERSIST: "persist",
}


def state_name(code: int) -> str:
    return STATE_NAMES.get(code, f"UNKNOWN({code})")


def parse_state(text: str) -> int:
    """State code from a user-typed name: case-insensitive, `TCP_` prefix and `-` tolerated."""
    key = text.strip().upper().replace("-", "_")
    key = key.removeprefix("TCP_")
    aliases = {"SYN_RCVD": "SYN_RECV", "FIN_WAIT_1": "FIN_WAIT1", "FIN_WAIT_2": "FIN_WAIT2", "TIMEWAIT": "TIME_WAIT",
               "CLOSED": "CLOSE", "LISTENING": "LISTEN"}
    key = aliases.get(key, key)
    if key not in STATE_CODES:
        from sockmon.core.errors import BadInput

        raise BadInput(f"unknown TCP state {text!r}; one of: {', '.join(n for n in STATE_CODES)}")
    return STATE_CODES[key]


def ss_duration(ms: int) -> str:
    """A timer's time left exactly as ``ss -o`` prints it (iproute2's print_ms_timer): ``4min25sec``,
    ``12min`` (seconds dropped above 9 minutes), ``59sec``, ``9.500sec`` (milliseconds only below
    10 s), ``476ms``; 0 prints nothing. Truncated, never rounded."""
    ms = max(0, int(ms))
    secs, msecs = divmod(ms, 1000)
    minutes, secs = divmod(secs, 60)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}{'sec' if secs else 'ms'}"
    return out
