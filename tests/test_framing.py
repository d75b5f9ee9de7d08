import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sockmon.core.lab.framing import FrameDecoder, FrameTooLarge, Partial, encode_frame

FRAMES = [b"hello", b"", b"x" * 300, bytes(range(256)), b"\x00\x00\x00\x05"]
STREAM = b"".join(encode_frame(f) for f in FRAMES)


def test_encode_is_big_endian_length_prefix():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_whole_stream_at_once():
    assert FrameDecoder().feed(STREAM) == FRAMES


def test_byte_at_a_time():
    dec = FrameDecoder()
    out = []
    for i in range(len(STREAM)):
        out += dec.feed(STREAM[i:i + 1])
    assert out == FRAMES
    assert dec.partial is None


def test_every_two_and_three_way_split():
    n = len(STREAM)
    for i in range(n + 1):
        dec = FrameDecoder()
        assert dec.feed(STREAM[:i]) + dec.feed(STREAM[i:]) == FRAMES, i
    for i in range(0, n + 1, 7):  # every 7th first cut x every second cut
        for j in range(i, n + 1):
            dec = FrameDecoder()
            assert dec.feed(STREAM[:i]) + dec.feed(STREAM[i:j]) + dec.feed(STREAM[j:]) == FRAMES, (i, j)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(max_size=600), max_size=12), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_hypothesis_frames_any_chunking(frames, cuts):
    stream = b"".join(encode_frame(f) for f in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    dec = FrameDecoder(max_size=1000)
    out, prev = [], 0
    for p in points + [len(stream)]:
        out += dec.feed(stream[prev:p])
        prev = p
    assert out == frames
    assert dec.partial is None


def test_partial_state_reports_known_length():
    dec = FrameDecoder()
    assert dec.partial is None
    assert dec.feed(b"\x00\x00") == []
    assert dec.partial == Partial(None, 2)
    assert dec.feed(b"\x01\x2cabc") == []
    assert dec.partial == Partial(300, 3)
    assert str(dec.partial) == "length known = 300, have 3 bytes"
    assert dec.feed(b"z" * 297) == [b"abc" + b"z" * 297]
    assert dec.partial is None


def test_oversize_length_rejected_and_decoder_stays_broken():
    dec = FrameDecoder(max_size=100)
    assert dec.feed(encode_frame(b"a" * 100)) == [b"a" * 100]  # exactly the maximum is fine
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b"\x00\x00\x00\x65")  # 101
    assert info.value.length == 101 and "exceeds the maximum of 100" in str(info.value)
    assert dec.broken
    with pytest.raises(FrameTooLarge):
        dec.feed(b"")


def test_oversize_detected_before_payload_arrives():
    dec = FrameDecoder(max_size=1 << 20)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\xff\xff\xff\xff")  # 4 GiB announced: rejected from the header alone


def test_encode_refuses_oversize():
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, max_size=10)
