"""Tests of the pure stream decoder (trio_tts_stream._stream_decoder): bytes in, events out.

No network, no trio: real bodies of every format come from the test server's pure renderer
(:func:`render_chunks`), computed once per module. The reference output of a format is its
body fed in one chunk; every other way of feeding it (any chunking, a ``Range`` resume, a
restart from byte 0) must give exactly the same events.
"""

from __future__ import annotations

import functools
import io
import itertools
import struct
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._decoders import available_formats, create_decoder, sniff_format
from trio_tts_stream._exceptions import (
    DecodeError,
    ResumeMismatchError,
    TTSStreamError,
    UnsupportedFormatError,
)
from trio_tts_stream._format import AudioFormat, Block, FormatHint, float_to_int16
from trio_tts_stream._metrics import MetricsRecorder
from trio_tts_stream._stream_decoder import (
    SNIFF_BYTES,
    Event,
    StreamDecoder,
    choose_decoder,
)
from trio_tts_stream.testing import (
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    render_chunks,
    synthesize_tone,
    wav_header,
)

F32 = npt.NDArray[np.float32]
I16 = npt.NDArray[np.int16]

FORMATS = ("pcm", "wav", "mp3", "aac", "flac", "opus")
LOSSLESS = ("pcm", "wav", "flac")
CONTENT_TYPES = {
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "opus": "audio/ogg",
}
TEXT = "Hello there."  # 0.78 s of audio: several codec frames in every format
OTHER_TEXT = "Something else entirely."
FMT = AudioFormat(SAMPLE_RATE, 1)

# -- bodies and helpers ----------------------------------------------------------------


def _skip_unless_available(fmt: str) -> None:
    if fmt not in available_formats() or fmt not in RESPONSE_FORMATS:
        pytest.skip(f"{fmt} needs PyAV (the formats extra)")


@functools.cache
def body(fmt: str, text: str = TEXT) -> bytes:
    """The test server's whole response body for ``text`` in ``fmt``."""
    return b"".join(render_chunks(text, response_format=fmt))


@functools.cache
def tone(text: str = TEXT) -> I16:
    """The int16 samples every body of ``text`` encodes."""
    return synthesize_tone(text)


def new_decoder(
    fmt: str,
    *,
    recorder: MetricsRecorder | None = None,
    timer: Callable[[], float] | None = None,
) -> StreamDecoder:
    """A decoder for a request of ``fmt``, already told about the response's headers."""
    decoder = StreamDecoder(FormatHint(fmt), recorder=recorder, timer=timer)
    decoder.begin_response(CONTENT_TYPES[fmt])
    return decoder


def feed_all(
    decoder: StreamDecoder, chunks: Iterable[bytes], *, finish: bool = True
) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    if finish:
        events += decoder.finish()
    return events


def blocks_of(events: Sequence[Event]) -> list[Block]:
    """The blocks of ``events``, checking that no AudioFormat hides among them."""
    blocks: list[Block] = []
    for event in events:
        assert not isinstance(event, AudioFormat), events
        assert event.dtype == np.float32
        assert event.ndim == 2
        assert len(event) > 0
        blocks.append(event)
    return blocks


def split(events: Sequence[Event]) -> tuple[AudioFormat, F32]:
    """(the format, the concatenated samples): exactly one AudioFormat, first."""
    assert events, "no events"
    fmt = events[0]
    assert isinstance(fmt, AudioFormat), events[0]
    blocks = blocks_of(events[1:])
    assert blocks, "a format but no audio"
    for block in blocks:
        assert block.shape[1] == fmt.channels
    return fmt, concat(blocks, fmt.channels)


def concat(blocks: Sequence[Block], channels: int = 1) -> F32:
    if not blocks:
        return np.zeros((0, channels), np.float32)
    return np.concatenate(blocks)


@functools.cache
def reference(fmt: str, text: str = TEXT) -> tuple[AudioFormat, F32]:
    """The body fed in one chunk, then finish()."""
    return split(feed_all(new_decoder(fmt), [body(fmt, text)]))


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def cycle_sizes(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    chunks, pos = [], 0
    for size in itertools.cycle(sizes):
        if pos >= len(data):
            break
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def assert_same(events: Sequence[Event], fmt: str) -> None:
    ref_fmt, ref_samples = reference(fmt)
    got_fmt, got_samples = split(events)
    assert got_fmt == ref_fmt
    assert got_samples.shape == ref_samples.shape
    assert np.array_equal(got_samples, ref_samples)


def pcm_bytes(samples: I16) -> bytes:
    return samples.astype("<i2").tobytes()


# -- 1. every format, whole body -------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_body_gives_one_format_then_blocks(fmt: str) -> None:
    _skip_unless_available(fmt)
    recorder = MetricsRecorder()
    decoder = new_decoder(fmt, recorder=recorder)
    first = decoder.feed(body(fmt))
    last = decoder.finish()
    audio_format, samples = split(first + last)
    assert recorder.format == fmt
    assert recorder.fallback_reason is None
    if fmt in LOSSLESS:
        assert audio_format == FMT
        assert np.array_equal(float_to_int16(samples[:, 0]), tone())
    else:
        one_shot = create_decoder(fmt)
        expected = concat(one_shot.decode(body(fmt)) + one_shot.flush())
        assert one_shot.audio_format == audio_format
        assert audio_format.channels == 1
        assert np.array_equal(samples, expected)
        # At least the whole tone (at the decoded rate: opus decodes at 48 kHz).
        assert len(samples) * SAMPLE_RATE >= len(tone()) * audio_format.sample_rate
        assert np.max(np.abs(samples)) > 0.1  # audio, not silence


@pytest.mark.parametrize("fmt", LOSSLESS)
def test_lossless_formats_are_bit_exact_against_the_tone(fmt: str) -> None:
    _skip_unless_available(fmt)
    audio_format, samples = reference(fmt)
    assert audio_format == FMT
    assert samples.shape == (len(tone()), 1)
    expected = tone().astype(np.float32) / np.float32(32768)
    assert np.array_equal(samples[:, 0], expected)


# -- 2. chunking does not matter -------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_any_split_points_give_the_same_output(fmt: str, data: st.DataObject) -> None:
    _skip_unless_available(fmt)
    raw = body(fmt)
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=24), label="points")
    assert_same(feed_all(new_decoder(fmt), split_at(raw, points)), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=4, deadline=None)
@given(sizes=st.lists(st.integers(1, SNIFF_BYTES - 1), min_size=1, max_size=6))
def test_chunks_smaller_than_the_sniff_give_the_same_output(fmt: str, sizes: list[int]) -> None:
    _skip_unless_available(fmt)
    assert_same(feed_all(new_decoder(fmt), cycle_sizes(body(fmt), sizes)), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_byte_chunks_give_the_same_output(fmt: str) -> None:
    _skip_unless_available(fmt)
    raw = body(fmt)
    assert_same(feed_all(new_decoder(fmt), [raw[i : i + 1] for i in range(len(raw))]), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_chunks_change_nothing(fmt: str) -> None:
    _skip_unless_available(fmt)
    raw = body(fmt)
    chunks = [b"", raw[:5], b"", raw[5:300], b"", raw[300:], b""]
    assert_same(feed_all(new_decoder(fmt), chunks), fmt)


# -- 3. the sniff ----------------------------------------------------------------------


def test_fewer_than_sniff_bytes_are_held_back() -> None:
    recorder = MetricsRecorder()
    raw = pcm_bytes(tone())
    decoder = new_decoder("pcm", recorder=recorder)
    for i in range(SNIFF_BYTES - 1):
        assert decoder.feed(raw[i : i + 1]) == []
    assert decoder.bytes_fed == SNIFF_BYTES - 1
    assert decoder.resume_offset == 0  # no decoder yet: a resume could not continue
    assert recorder.format is None
    assert decoder.frames_emitted == 0
    events = decoder.feed(raw[SNIFF_BYTES - 1 : SNIFF_BYTES])
    audio_format, samples = split(events)
    assert audio_format == FMT
    assert recorder.format == "pcm"
    assert np.array_equal(float_to_int16(samples[:, 0]), tone()[: SNIFF_BYTES // 2])
    assert decoder.resume_offset == SNIFF_BYTES


@pytest.mark.parametrize("length", [2, 3, SNIFF_BYTES - 2, SNIFF_BYTES - 1])
def test_a_body_shorter_than_the_sniff_decodes_at_finish(length: int) -> None:
    raw = pcm_bytes(tone())[:length]
    decoder = new_decoder("pcm")
    assert decoder.feed(raw) == []
    audio_format, samples = split(decoder.finish())
    assert audio_format == FMT
    assert np.array_equal(float_to_int16(samples[:, 0]), tone()[: length // 2])
    assert decoder.frames_emitted == length // 2


def test_a_short_wav_body_decodes_at_finish_too() -> None:
    """A WAV header alone is longer than the sniff; a tiny WAV is one chunk under 64 bytes."""
    samples = tone()[:5]
    raw = wav_header(SAMPLE_RATE, data_bytes=10) + pcm_bytes(samples)
    decoder = new_decoder("wav")
    audio_format, out = split(decoder.feed(raw) + decoder.finish())
    assert audio_format == FMT
    assert np.array_equal(float_to_int16(out[:, 0]), samples)


def test_an_empty_body_is_an_error_not_a_silent_success() -> None:
    recorder = MetricsRecorder()
    decoder = new_decoder("pcm", recorder=recorder)
    assert decoder.feed(b"") == []
    with pytest.raises(DecodeError, match="empty body"):
        decoder.finish()
    assert recorder.format is None
    assert decoder.frames_emitted == 0


# -- 4. choosing the decoder -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "audio/pcm", "audio/wav", "application/octet-stream"]
)
def test_a_wav_body_asked_for_as_pcm_decodes_as_wav(content_type: str | None) -> None:
    raw = body("wav")
    assert choose_decoder(raw[:SNIFF_BYTES], content_type, FormatHint("pcm")).name == "wav"
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("pcm"), recorder=recorder)
    decoder.begin_response(content_type)
    audio_format, samples = split(feed_all(decoder, [raw]))
    assert recorder.format == "wav"
    assert audio_format == FMT
    # Decoded as pcm, the 44-byte header would be 22 extra (noise) samples.
    assert np.array_equal(float_to_int16(samples[:, 0]), tone())


@pytest.mark.parametrize("content_type", ["audio/flac", "audio/mpeg", "audio/ogg; codecs=opus"])
def test_a_riff_body_with_another_content_type_plays_as_wav_and_says_so(
    content_type: str,
) -> None:
    """The RIFF/WAVE magic is never a coincidence: the bytes win over a wrong label."""
    raw = body("wav")
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("wav"), recorder=recorder)
    decoder.begin_response(content_type)
    assert decoder.feed(raw[: SNIFF_BYTES - 1]) == []
    audio_format, samples = split(decoder.feed(raw[SNIFF_BYTES - 1 :]) + decoder.finish())
    assert recorder.format == "wav"
    assert audio_format == FMT
    assert np.array_equal(float_to_int16(samples[:, 0]), tone())
    assert recorder.format_note is not None
    assert content_type.split(";")[0] in recorder.format_note
    assert "a WAV file" in recorder.format_note
    assert recorder.fallback_reason is None


def test_matching_or_unspecific_types_leave_no_note() -> None:
    raw = body("wav")
    for content_type in (None, "", "audio/wav", "application/octet-stream"):
        recorder = MetricsRecorder()
        decoder = StreamDecoder(FormatHint("wav"), recorder=recorder)
        decoder.begin_response(content_type)
        feed_all(decoder, [raw])
        assert recorder.format_note is None, content_type


# A valid MPEG-1 Layer III header (128 kbit/s, 44.1 kHz) and an ADTS (AAC) one.
FRAME_SYNCS = {"mp3": b"\xff\xfb\x90\x64", "aac": b"\xff\xf1\x50\x80"}


@pytest.mark.parametrize("looks_like", sorted(FRAME_SYNCS))
@pytest.mark.parametrize("content_type", [None, "audio/pcm"])
def test_pcm_starting_with_a_frame_sync_stays_pcm(
    looks_like: str, content_type: str | None
) -> None:
    samples = np.concatenate(
        [np.frombuffer(FRAME_SYNCS[looks_like], dtype="<i2"), tone()[:2000]]
    ).astype(np.int16)
    raw = pcm_bytes(samples)
    assert sniff_format(raw[:SNIFF_BYTES], None) == looks_like  # the trap is real
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("pcm"), recorder=recorder)
    decoder.begin_response(content_type)
    audio_format, out = split(feed_all(decoder, [raw]))
    assert recorder.format == "pcm"
    assert audio_format == FMT
    assert np.array_equal(float_to_int16(out[:, 0]), samples)


def test_a_frame_sync_is_trusted_for_a_non_pcm_request() -> None:
    """The override above is for pcm requests only: a wav request's frame sync means mp3."""
    head = FRAME_SYNCS["mp3"] + bytes(SNIFF_BYTES)
    if "mp3" in available_formats():
        assert choose_decoder(head, None, FormatHint("wav")).name == "mp3"
    assert choose_decoder(head, None, FormatHint("pcm")).name == "pcm"


def test_a_declared_content_type_wins_over_the_pcm_hint() -> None:
    _skip_unless_available("mp3")
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("pcm"), recorder=recorder)
    decoder.begin_response("audio/mpeg")
    audio_format, samples = split(feed_all(decoder, [body("mp3")]))
    assert recorder.format == "mp3"
    assert (audio_format, samples.shape) == (reference("mp3")[0], reference("mp3")[1].shape)
    assert np.array_equal(samples, reference("mp3")[1])


def test_the_pcm_hint_gives_headerless_pcm_its_rate_and_channels() -> None:
    samples = tone()[:1000]
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("pcm", sample_rate=16000, channels=2), recorder=recorder)
    decoder.begin_response(None)
    audio_format, out = split(feed_all(decoder, [pcm_bytes(samples)]))
    assert audio_format == AudioFormat(16000, 2)
    assert np.array_equal(float_to_int16(out), samples.reshape(-1, 2))


# -- 5. the buffered fallback ----------------------------------------------------------


def _encode_with_pyav(container: str, codec: str, samples: I16) -> bytes:
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data: bytes = buf.getvalue()
    return data


@functools.cache
def mulaw_wav() -> bytes:
    """mu-law WAV: the streaming WAV decoder refuses it, PyAV decodes it whole."""
    return _encode_with_pyav("wav", "pcm_mulaw", tone())


@functools.cache
def m4a() -> bytes:
    """AAC in MP4: no streaming decoder is registered for it."""
    return _encode_with_pyav("mp4", "aac", tone())


def test_a_body_the_streaming_decoder_refuses_is_decoded_whole_at_finish() -> None:
    raw = mulaw_wav()
    assert raw.startswith(b"RIFF")
    recorder = MetricsRecorder()
    decoder = new_decoder("wav", recorder=recorder)
    # The first chunk holds the whole header, so the refusal comes with it.
    for chunk in cycle_sizes(raw, [1000]):
        assert decoder.feed(chunk) == []
    assert recorder.fallback_reason is not None
    assert "wav" in recorder.fallback_reason
    audio_format, samples = split(decoder.finish())
    assert audio_format == FMT
    assert recorder.format == "pcm_mulaw"
    assert samples.shape == (len(tone()), 1)
    decoded = float_to_int16(samples[:, 0]).astype(np.int32)
    assert np.max(np.abs(decoded - tone())) < 1100  # mu-law: 8 bits, close but not equal
    assert decoder.frames_emitted == recorder.frames_decoded == len(tone())


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_format_with_no_streaming_decoder_is_decoded_whole_at_finish(size: int) -> None:
    from trio_tts_stream._decoders._pyav import decode_whole

    raw = m4a()
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("m4a"), recorder=recorder)
    decoder.begin_response("audio/mp4")
    for chunk in cycle_sizes(raw, [size]):
        assert decoder.feed(chunk) == []
    assert recorder.fallback_reason is not None
    assert "MP4/M4A" in recorder.fallback_reason
    audio_format, samples = split(decoder.finish())
    name, expected_format, expected = decode_whole(raw)
    assert recorder.format == name == "aac"
    assert audio_format == expected_format == FMT
    assert np.array_equal(samples, concat(expected))
    assert len(samples) >= len(tone())


# -- 6. resuming -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=3, deadline=None)
@given(where=st.floats(0.0, 1.0))
def test_a_range_resume_continues_bit_identically(fmt: str, where: float) -> None:
    _skip_unless_available(fmt)
    raw = body(fmt)
    cut = SNIFF_BYTES + int(where * (len(raw) - SNIFF_BYTES))
    decoder = new_decoder(fmt)
    events = feed_all(decoder, [raw[:cut]], finish=False)
    assert decoder.bytes_fed == cut
    assert decoder.resume_offset == cut
    decoder.begin_response(CONTENT_TYPES[fmt], continues=True)
    assert decoder.resume_offset == cut  # the same decoder, the same offset
    events += feed_all(decoder, [raw[cut:]])
    assert decoder.bytes_fed == len(raw)
    assert_same(events, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_restart_from_byte_zero_skips_the_overlap_exactly(fmt: str) -> None:
    _skip_unless_available(fmt)
    raw = body(fmt)
    recorder = MetricsRecorder()
    decoder = new_decoder(fmt, recorder=recorder)
    events = feed_all(decoder, [raw[: len(raw) * 3 // 4]], finish=False)
    played = decoder.frames_emitted
    assert played > 0, "the cut must come after some audio"
    assert played == sum(len(b) for b in blocks_of(events[1:]))
    decoder.begin_response(CONTENT_TYPES[fmt])  # a fresh response: the body again
    assert decoder.bytes_fed == 0
    assert decoder.resume_offset == 0
    again = feed_all(decoder, [raw[:100], raw[100:]])
    assert not any(isinstance(e, AudioFormat) for e in again)  # announced once only
    assert recorder.skipped_overlap_frames == played
    assert_same(events + again, fmt)
    total = len(reference(fmt)[1])
    assert decoder.frames_emitted == recorder.frames_decoded == total


def test_a_restart_twice_skips_both_overlaps() -> None:
    raw = body("pcm")
    recorder = MetricsRecorder()
    decoder = new_decoder("pcm", recorder=recorder)
    events = feed_all(decoder, [raw[:1000]], finish=False)
    decoder.begin_response("audio/pcm")
    events += feed_all(decoder, [raw[:3000]], finish=False)
    decoder.begin_response("audio/pcm")
    events += feed_all(decoder, [raw])
    assert recorder.skipped_overlap_frames == 500 + 1500
    assert_same(events, "pcm")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_restart_with_different_audio_is_a_mismatch(fmt: str) -> None:
    _skip_unless_available(fmt)
    decoder = new_decoder(fmt)
    raw = body(fmt)
    feed_all(decoder, [raw[: len(raw) * 3 // 4]], finish=False)
    assert decoder.frames_emitted > 0
    decoder.begin_response(CONTENT_TYPES[fmt])
    with pytest.raises(ResumeMismatchError, match="different audio"):
        feed_all(decoder, [body(fmt, OTHER_TEXT)])


def test_a_mismatch_is_a_tts_stream_error_and_reports_nothing_of_the_new_audio() -> None:
    recorder = MetricsRecorder()
    decoder = new_decoder("pcm", recorder=recorder)
    feed_all(decoder, [body("pcm")[:2000]], finish=False)
    decoder.begin_response("audio/pcm")
    different = pcm_bytes(tone(OTHER_TEXT))
    with pytest.raises(TTSStreamError):
        decoder.feed(different)
    assert decoder.frames_emitted == recorder.frames_decoded == 1000


def test_reset_forgets_what_was_emitted_but_keeps_the_format_announced() -> None:
    recorder = MetricsRecorder()
    decoder = new_decoder("pcm", recorder=recorder)
    first = feed_all(decoder, [body("pcm")[:2000]], finish=False)
    assert isinstance(first[0], AudioFormat)
    assert decoder.frames_emitted == 1000
    decoder.reset()
    assert decoder.frames_emitted == 0
    assert decoder.bytes_fed == 0
    assert decoder.resume_offset == 0
    # Different audio is no mismatch now: nothing is skipped, nothing compared.
    decoder.begin_response("audio/pcm")
    events = feed_all(decoder, [body("pcm", OTHER_TEXT)])
    assert not any(isinstance(e, AudioFormat) for e in events)  # not re-announced
    samples = concat(blocks_of(events))
    assert np.array_equal(float_to_int16(samples[:, 0]), tone(OTHER_TEXT))
    assert recorder.skipped_overlap_frames == 0
    assert decoder.frames_emitted == len(tone(OTHER_TEXT))


def test_reset_before_any_audio_announces_the_format_of_the_next_response() -> None:
    decoder = new_decoder("pcm")
    assert decoder.feed(b"\x00" * 5) == []
    decoder.reset()
    decoder.begin_response("audio/pcm")
    audio_format, samples = split(feed_all(decoder, [body("pcm")]))
    assert audio_format == FMT
    assert np.array_equal(float_to_int16(samples[:, 0]), tone())


# -- 7. the format changing across responses -------------------------------------------


def test_a_restart_in_another_format_is_an_error() -> None:
    """The re-requested stream repeats the audio exactly but says it is 16 kHz."""
    samples = tone()[:4000]
    decoder = StreamDecoder(FormatHint("pcm"))
    decoder.begin_response(None)
    feed_all(decoder, [pcm_bytes(samples[:1000])], finish=False)
    decoder.begin_response("audio/wav")
    restart = wav_header(16000) + pcm_bytes(samples)
    with pytest.raises(UnsupportedFormatError, match="changed"):
        feed_all(decoder, [restart])


def test_a_new_format_after_reset_is_an_error() -> None:
    decoder = new_decoder("pcm")
    feed_all(decoder, [body("pcm")[:2000]], finish=False)
    decoder.reset()
    decoder.begin_response("audio/wav")
    with pytest.raises(UnsupportedFormatError, match="changed"):
        feed_all(decoder, [wav_header(16000) + pcm_bytes(tone()[:1000])])


# -- 8. timing -------------------------------------------------------------------------


class Counter:
    """A fake clock that advances ``step`` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def test_each_decoder_call_is_timed_with_the_timer() -> None:
    raw = body("pcm")
    chunks = cycle_sizes(raw, [SNIFF_BYTES, 999, 4000])
    timer = Counter(0.25)
    recorder = MetricsRecorder()
    decoder = new_decoder("pcm", recorder=recorder, timer=timer)
    feed_all(decoder, chunks)
    calls = len(chunks) + 1  # every feed, and the flush in finish()
    assert recorder.decode_calls == calls
    assert timer.reads == 2 * calls
    assert recorder.decode_sample == [0.25] * calls
    assert recorder.decode_total_s == pytest.approx(0.25 * calls)
    mean, p95 = recorder.decode_ms()
    assert mean == pytest.approx(250.0)
    assert p95 == pytest.approx(250.0)


def test_the_sniff_hold_back_is_not_a_decoder_call() -> None:
    timer = Counter(1.0)
    recorder = MetricsRecorder()
    decoder = new_decoder("pcm", recorder=recorder, timer=timer)
    decoder.feed(b"\x00" * (SNIFF_BYTES - 1))
    assert recorder.decode_calls == 0
    assert timer.reads == 0


def test_the_whole_body_decode_of_the_fallback_is_timed() -> None:
    timer = Counter(0.5)
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("m4a"), recorder=recorder, timer=timer)
    decoder.begin_response(None)
    decoder.feed(m4a())
    assert recorder.decode_calls == 0  # no streaming decoder ran
    decoder.finish()
    assert recorder.decode_calls == 1
    assert recorder.decode_sample == [0.5]


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_no_timer_records_no_times(fmt: str) -> None:
    recorder = MetricsRecorder()
    decoder = new_decoder(fmt, recorder=recorder, timer=None)
    feed_all(decoder, cycle_sizes(body(fmt), [3000]))
    assert recorder.decode_calls == 0
    assert recorder.decode_total_s == 0.0
    assert recorder.decode_sample == []
    assert recorder.decode_ms() == (None, None)
    assert recorder.frames_decoded > 0  # the rest is still recorded


# -- 9. frame accounting ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_frames_decoded_and_emitted_count_the_frames_emitted(fmt: str) -> None:
    _skip_unless_available(fmt)
    recorder = MetricsRecorder()
    decoder = new_decoder(fmt, recorder=recorder)
    emitted = 0
    for chunk in cycle_sizes(body(fmt), [777]):
        emitted += sum(len(e) for e in decoder.feed(chunk) if not isinstance(e, AudioFormat))
        assert decoder.frames_emitted == recorder.frames_decoded == emitted
    emitted += sum(len(e) for e in decoder.finish() if not isinstance(e, AudioFormat))
    assert decoder.frames_emitted == recorder.frames_decoded == emitted
    assert emitted == len(reference(fmt)[1])


# -- 10. garbage -----------------------------------------------------------------------

GARBAGE = bytes(range(256)) * 40


@pytest.mark.parametrize(
    ("hint", "content_type"),
    [("wav", None), ("wav", "audio/wav"), ("flac", None), ("vorbis", None), ("m4a", "audio/mp4")],
)
@pytest.mark.parametrize("size", [len(GARBAGE), 100])
def test_garbage_is_a_decode_error(hint: str, content_type: str | None, size: int) -> None:
    if hint == "flac":
        _skip_unless_available("flac")
    pytest.importorskip("av")  # with PyAV the fallback is tried, and fails
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint(hint), recorder=recorder)
    decoder.begin_response(content_type)
    for chunk in cycle_sizes(GARBAGE, [size]):
        assert decoder.feed(chunk) == []
    with pytest.raises(DecodeError) as info:
        decoder.finish()
    assert isinstance(info.value, TTSStreamError)
    assert recorder.fallback_reason is not None
    assert decoder.frames_emitted == 0


def test_riff_garbage_declared_as_another_format_is_a_decode_error() -> None:
    """The RIFF magic wins over the label; the wav decoder and the fallback both refuse."""
    garbage = b"RIFF\xff\xff\xff\xffWAVE" + GARBAGE
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("mp3"), recorder=recorder)
    decoder.begin_response("audio/mpeg")
    with pytest.raises(DecodeError, match="wav decoder refused"):
        feed_all(decoder, [garbage])
    assert recorder.format_note is not None
    assert "audio/mpeg" in recorder.format_note


def test_no_fallback_once_audio_was_emitted() -> None:
    """A second response the decoder refuses cannot be buffered: audio already played."""
    decoder = new_decoder("wav")
    raw = body("wav")
    feed_all(decoder, [raw[:2000]], finish=False)
    decoder.begin_response("audio/wav")
    with pytest.raises(DecodeError):
        feed_all(decoder, [b"RIFF\x00\x00\x00\x00WAVE" + GARBAGE])


def test_finish_twice_after_a_full_pcm_stream_gives_nothing_more() -> None:
    decoder = new_decoder("pcm")
    split(feed_all(decoder, [body("pcm")]))
    assert decoder.finish() == []


def test_wav_header_helper_is_what_the_wav_body_starts_with() -> None:
    """A sanity check of the fixture: the wav body is a streaming header then the pcm."""
    raw = body("wav")
    header = wav_header(SAMPLE_RATE)
    assert raw.startswith(header)
    assert raw[len(header) :] == body("pcm")
    assert struct.unpack("<I", raw[4:8]) == (0xFFFFFFFF,)


# -- never noise, never silent success, bounded memory (issue 9) -------------------------


def whole(raw: bytes) -> F32:
    from trio_tts_stream._decoders._pyav import decode_whole

    return concat(decode_whole(raw)[2])


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_the_fallback_keeps_every_byte_whatever_the_chunking(data: st.DataObject) -> None:
    # mu-law WAV: the streaming WAV decoder refuses it when it sees the header, which
    # may be in the first chunk or the fifth; the fallback must start from byte 0.
    raw = mulaw_wav()
    points = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=8))
    if data.draw(st.booleans()):
        points += [12, 13, 40]  # a first chunk of 12 bytes, as in the issue
    decoder = new_decoder("wav")
    _, samples = split(feed_all(decoder, split_at(raw, points)))
    assert np.array_equal(samples, whole(raw))


@pytest.mark.parametrize("size", [12, 100, 4096, 1 << 20])
def test_a_refusal_at_the_end_of_the_body_still_runs_the_fallback(size: int) -> None:
    # A small .m4a asked for as aac: the ADTS decoder finds no frame and refuses only
    # when flushed; the fallback must run then, not report success with no audio.
    raw = m4a()
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("aac"), recorder=recorder)
    decoder.begin_response("audio/aac")
    _, samples = split(feed_all(decoder, cycle_sizes(raw, [size])))
    assert recorder.fallback_reason is not None
    assert np.array_equal(samples, whole(raw))


def test_an_endless_body_of_garbage_fails_within_the_limit() -> None:
    limit = 64 * 1024
    decoder = StreamDecoder(FormatHint("mp3"), fallback_limit=limit)
    decoder.begin_response("audio/mpeg")
    garbage = bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8))
    fed = [0]

    def endless() -> None:
        for _ in range(10_000):
            decoder.feed(garbage)
            fed[0] += len(garbage)

    with pytest.raises(DecodeError, match=f"no audio in its first {limit} bytes"):
        endless()
    assert fed[0] <= limit  # it stopped at the limit, not after 40 MB


def test_a_fallback_body_larger_than_the_limit_fails_instead_of_growing() -> None:
    raw = mulaw_wav()
    limit = 4096
    assert len(raw) > 2 * limit
    decoder = StreamDecoder(FormatHint("wav"), fallback_limit=limit)
    decoder.begin_response("audio/wav")
    with pytest.raises(DecodeError, match="fallback_limit_bytes=4096"):
        feed_all(decoder, cycle_sizes(raw, [1024]))


def test_the_fallback_error_gives_our_reason_before_ffmpegs() -> None:
    pytest.importorskip("av")
    bad = b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 200  # a WAV header with rate 0
    decoder = StreamDecoder(FormatHint("wav"))
    decoder.begin_response("audio/wav")
    with pytest.raises(DecodeError) as info:
        feed_all(decoder, [bad])
    message = str(info.value)
    assert message.startswith("wav decoder refused the stream")
    assert "found no audio either" in message
    assert isinstance(info.value.__cause__, DecodeError)


def test_a_body_with_no_decodable_audio_is_an_error_at_finish() -> None:
    decoder = StreamDecoder(FormatHint("mp3"))
    decoder.begin_response("audio/mpeg")
    assert decoder.feed(b"\x00" * 5000) == []
    with pytest.raises(DecodeError, match="no audio"):
        decoder.finish()


def test_the_bytes_kept_for_the_fallback_are_released_once_audio_comes_out() -> None:
    decoder = new_decoder("pcm")
    decoder.feed(body("pcm")[:4096])
    assert decoder._kept is None  # nothing is kept once the streaming decoder works
