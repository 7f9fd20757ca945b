import io
from fractions import Fraction

import av
import numpy as np
import pytest

from contract.errors import CriticError, EmptyVideoError, InvalidVideoError, VideoTooLargeError
from contract.sampling import FrameSampling
from contract.video import VideoLimits, decode_sampled, decode_video, encode_video
from critic.samples import make_clip


def test_round_trip_from_bytes_and_file(tmp_path):
    frames = make_clip(9, 32)
    data = encode_video(frames, fps=8)
    v = decode_video(data)
    assert v.frames.shape == (9, 32, 32, 3) and v.frames.dtype == np.uint8
    assert v.fps == pytest.approx(8.0)
    assert np.abs(v.frames.astype(int) - frames.astype(int)).mean() < 8  # lossy but close
    path = tmp_path / "c.mp4"
    path.write_bytes(data)
    assert np.array_equal(decode_video(path).frames, v.frames)


def _zero_frame_container() -> bytes:
    """A valid AVI with a video stream and no frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="avi") as out:
        s = out.add_stream("mpeg4", rate=Fraction(8))
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()
    return buf.getvalue()


def _audio_only() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="wav") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def _unknown_codec(container: str) -> bytes:
    """A clip whose video stream names a codec FFmpeg does not know (its tag overwritten): no decoder."""
    if container == "mp4":
        return encode_video(make_clip(9, 32), fps=8).replace(b"avc1", b"zzzz")
    return _two_streams().replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/AVC").replace(b"V_MPEG4/ISO/ASP", b"V_ZZZZZ/ISO/ASP")


def _two_streams() -> bytes:
    """A Matroska file with two video streams of the same clip: MPEG-4 part 2 first, then H.264."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as out:
        streams = [out.add_stream(codec, rate=Fraction(8)) for codec in ("mpeg4", "libx264")]
        for s in streams:
            s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for frame in make_clip(9, 32):
            for s in streams:
                for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(p)
        for s in streams:
            for p in s.encode():
                out.mux(p)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, error, match",
    [
        (b"", EmptyVideoError, "empty"),
        (b"this is not a video at all" * 10, InvalidVideoError, "cannot open"),
        (_audio_only(), InvalidVideoError, "no video stream"),
        (_unknown_codec("mp4"), InvalidVideoError, "codec this service can decode"),
        (_unknown_codec("mkv"), InvalidVideoError, "codec this service can decode"),
    ],
)
def test_bad_bytes_are_typed_errors(data, error, match):
    with pytest.raises(error, match=match):
        decode_video(data)


def test_the_first_decodable_video_stream_is_read():
    data = _two_streams()
    assert decode_video(data).frames.shape == (9, 32, 32, 3)
    # the first stream's codec unknown: the second stream's frames, not an error
    v = decode_video(data.replace(b"V_MPEG4/ISO/ASP", b"V_ZZZZZ/ISO/ASP"))
    assert v.frames.shape == (9, 32, 32, 3) and np.abs(v.frames.astype(int) - make_clip(9, 32)).mean() < 8


def test_zero_frame_video_is_empty():
    data = _zero_frame_container()
    assert len(data) > 0
    with pytest.raises(EmptyVideoError, match="zero frames"):
        decode_video(data)


def _encoded(codec: str, container: str, pix_fmt: str) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        s = out.add_stream(codec, rate=Fraction(8))
        s.width, s.height, s.pix_fmt = 48, 32, pix_fmt
        for frame in make_clip(12, 48)[:, :32]:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def _damaged(data: bytes, rng: np.random.Generator) -> list[bytes]:
    """Copies of ``data`` with bytes overwritten anywhere or near either end, spans cut out or repeated,
    and the tail cut off."""
    out = [data[: len(data) * k // 10] for k in (1, 3, 5, 8)]
    for _ in range(12):
        b = bytearray(data)
        for i in rng.integers(0, len(b), rng.choice([1, 8, 64])):
            b[i] = rng.integers(256)
        out.append(bytes(b))
    for _ in range(12):
        b = bytearray(data)
        i = int(rng.integers(min(600, len(b))))
        b[i if rng.random() < 0.5 else len(b) - 1 - i] = rng.choice([0, 255])
        out.append(bytes(b))
    for _ in range(4):
        a, z = sorted(rng.choice(len(data), 2, replace=False))
        out += [data[:a] + data[z:], data[:z] + data[a:z] + data[z:]]
    return out


@pytest.mark.parametrize("codec, container, pix_fmt", [
    ("libx264", "mp4", "yuv420p"), ("libx264", "matroska", "yuv444p"), ("mpeg4", "avi", "yuv420p"),
    ("mjpeg", "mov", "yuvj420p"), ("libvpx-vp9", "webm", "yuv420p"), ("gif", "gif", "rgb8"), ("png", "mov", "rgba"),
])
def test_damaged_files_decode_or_raise_a_typed_error(codec, container, pix_fmt):
    """The class of a hostile upload, not one example: whatever the damage, decoding ends in frames or a
    CriticError (a 4xx), never another exception (a 500)."""
    data = _encoded(codec, container, pix_fmt)
    assert decode_sampled(data, FrameSampling.uniform(8).indices, max_side=64).frames.shape == (8, 32, 48, 3)
    outcomes = set()
    for bad in _damaged(data, np.random.default_rng(0)):
        try:
            v = decode_sampled(bad, FrameSampling.uniform(8).indices, max_side=64)
        except CriticError as e:
            outcomes.add(e.code)
        else:
            assert v.frames.dtype == np.uint8 and v.frames.ndim == 4 and len(v.frames) == len(v.indices) > 0
            outcomes.add("decoded")
    assert outcomes - {"decoded"}  # the damage did reach the decoder's error paths


def test_truncated_video_is_invalid_or_shorter_never_blank():
    data = encode_video(make_clip(17, 32), fps=8)
    cut = data[: len(data) // 3]
    try:
        v = decode_video(cut)
    except InvalidVideoError:
        return
    assert 0 < v.num_frames < 17 and v.frames.std() > 0


def test_missing_file_is_invalid(tmp_path):
    with pytest.raises(InvalidVideoError, match="cannot read"):
        decode_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize(
    "limits, which",
    [
        (VideoLimits(max_bytes=100), "max_bytes"),
        (VideoLimits(max_pixels=32 * 31), "max_pixels"),
        (VideoLimits(max_frames=5), "max_frames"),
        (VideoLimits(max_duration_s=1.0), "max_duration_s"),
    ],
)
def test_limits(limits, which):
    data = encode_video(make_clip(17, 32), fps=8)  # 17 frames, 2.1 s, 32x32
    with pytest.raises(VideoTooLargeError) as e:
        decode_video(data, limits)
    assert e.value.details["limit"] == which
