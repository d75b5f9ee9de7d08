"""Engine events as the CLI prints them."""


def test_event_json_keeps_binary_bytes_as_hex():
    from sockmon.core.lab.events import EventKind, make_event

    out = make_event(EventKind.BYTES_IN, nbytes=2, data=b"\xde\xad").as_json()
    assert bytes.fromhex(out["hex"]) == b"\xde\xad"
    assert out["nbytes"] == 2 and out["kind"] == "bytes_in"
