"""Streaming decode: only the sampled frames are kept, in bounded memory and time, whatever the header says."""

import io
import json
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from contract.errors import UnsupportedMediaError, VideoTooLargeError
from contract.sampling import FrameSampling
from contract.video import VideoLimits, decode_sampled, decode_video, encode_video
from critic.samples import make_clip


def _encode(frames: np.ndarray, fmt: str, fps: int = 8, codec: str = "libx264", container=None, path=None,
            **opts) -> bytes:
    buf = path or io.BytesIO()  # faststart rewrites the file: it needs a path
    with av.open(buf, mode="w", format=fmt, options=container or {}) as out:
        s = out.add_stream(codec, rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"preset": "ultrafast", **opts}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path.read_bytes() if path else buf.getvalue()


@pytest.mark.parametrize("sampling", [FrameSampling.uniform(8), FrameSampling.segmental(4, seed=3),
                                      FrameSampling.at_fps(2.0), FrameSampling.every_frame()])
def test_sampled_frames_equal_decode_all(sampling):
    data = encode_video(make_clip(33, 32), fps=8)
    every = decode_video(data)
    s = decode_sampled(data, sampling.indices, None)
    assert s.indices == sampling.indices(33, 8.0) and s.num_frames == 33
    assert np.array_equal(s.frames, every.frames[s.indices])


def test_header_that_lies_gets_indices_from_the_true_count(tmp_path):
    """A cut file: the header (moov first) says 33 frames, fewer decode. Indices follow the frames that exist."""
    data = _encode(make_clip(33, 32), "mp4", container={"movflags": "faststart"}, qp="0",
                   path=tmp_path / "moov-first.mp4")
    cut = data[: len(data) * 2 // 3]
    with av.open(io.BytesIO(cut)) as c:
        assert c.streams.video[0].frames == 33
    every = decode_video(cut)
    assert 0 < every.num_frames < 33
    s = decode_sampled(cut, FrameSampling.uniform(8).indices)
    assert s.num_frames == every.num_frames
    assert s.indices == FrameSampling.uniform(8).indices(every.num_frames, 8.0)
    assert np.array_equal(s.frames, every.frames[s.indices])


@pytest.mark.parametrize("fmt", ["h264", "matroska"])
def test_no_frame_count_in_header(fmt):
    frames = make_clip(25, 32)
    data = _encode(frames, fmt, qp="0")
    with av.open(io.BytesIO(data)) as c:
        assert not c.streams.video[0].frames  # nothing to trust: counted by demuxing
    s = decode_sampled(data, FrameSampling.uniform(4).indices)
    assert s.num_frames == 25 and s.indices == FrameSampling.uniform(4).indices(25, s.fps)
    assert np.abs(s.frames.astype(int) - frames[s.indices].astype(int)).mean() < 8


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_still_images_are_unsupported_media(fmt, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(make_clip(1, 32)[0]).save(buf, format=fmt)
    path = tmp_path / "renamed.mp4"
    path.write_bytes(buf.getvalue())
    for source in (buf.getvalue(), path):
        with pytest.raises(UnsupportedMediaError, match="still image"):
            decode_sampled(source, FrameSampling.uniform(8).indices)


def test_one_frame_video_is_still_a_video():
    s = decode_sampled(encode_video(make_clip(1, 32)), FrameSampling.uniform(8).indices)
    assert s.num_frames == 1 and s.frames.shape == (1, 32, 32, 3)


def test_early_downscale_keeps_aspect():
    data = encode_video(np.zeros((9, 48, 96, 3), np.uint8) + 100)
    s = decode_sampled(data, FrameSampling.uniform(3).indices, max_side=32)
    assert s.frames.shape == (3, 16, 32, 3) and s.meta["width"] == 96 and s.meta["frame_width"] == 32
    assert decode_sampled(data, FrameSampling.uniform(3).indices, max_side=500).frames.shape == (3, 48, 96, 3)


def test_sampled_pixel_budget_is_refused_before_decoding():
    data = encode_video(make_clip(17, 32))
    with pytest.raises(VideoTooLargeError) as e:
        decode_sampled(data, FrameSampling.every_frame().indices, VideoLimits(max_sampled_pixels=16 * 32 * 32))
    assert e.value.details["limit"] == "max_sampled_pixels"
    assert decode_sampled(data, FrameSampling.uniform(8).indices, VideoLimits(max_sampled_pixels=16 * 32 * 32))


def test_decode_deadline():
    data = encode_video(make_clip(17, 32))
    with pytest.raises(VideoTooLargeError) as e:
        decode_sampled(data, FrameSampling.uniform(2).indices, VideoLimits(max_decode_s=1e-9))
    assert e.value.details["limit"] == "max_decode_s"


_PEAK = """
import json, resource, sys
from contract.sampling import FrameSampling
from contract.video import decode_sampled
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = decode_sampled(sys.argv[1], FrameSampling.uniform(8).indices)
print(json.dumps({"frames": s.num_frames, "kept": list(s.frames.shape),
                  "growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def _peak(path) -> dict:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_bomb_class_video_decodes_in_bounded_memory(tmp_path):
    """Flat 720p frames compress to almost nothing; decoding every frame would need ~2.6 MB each.
    Memory must not grow with the frame count: 20 frames and 480 frames cost the same."""
    flat = np.full((720, 1280, 3), 90, np.uint8)
    paths = {}
    for n in (20, 480):
        paths[n] = tmp_path / f"flat{n}.mp4"
        paths[n].write_bytes(_encode(np.broadcast_to(flat, (n, *flat.shape)), "mp4", fps=30, crf="40", g="480"))
    assert paths[480].stat().st_size < 100_000
    short, long_ = _peak(paths[20]), _peak(paths[480])
    assert long_["frames"] == 480 and long_["kept"] == [8, 720, 1280, 3]
    # decode-all would hold 480 x 2.6 MB = 1.3 GB; the stated bound for this size is kept frames + decoder state
    assert long_["growth_mb"] < 8 * 2.76 + 100, long_
    assert long_["growth_mb"] < short["growth_mb"] + 40, (short, long_)
