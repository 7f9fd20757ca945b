"""Video in and out with PyAV: decoding from bytes or a file in bounded memory and time, and
deterministic encoding (the same frames always give the same mp4 bytes).

The decoder streams: it decides which frame indices the sampling needs (from the
header's frame count, or a cheap packet count when the header has none), decodes
frames one after another, and converts to RGB only the frames it keeps, downscaled
early when the caller names a largest side. Every other decoded frame is dropped as
soon as the next one arrives. When the header lied (the stream decodes to another
number of frames) the indices are recomputed from the true count, and a second pass
fetches any frame the first one did not keep.

What one decode may hold, whatever the video's length (``VideoLimits``):

- the frames it keeps: at most ``max_sampled_pixels`` RGB pixels (3 bytes each;
  the default, 32 frames of 1080p, is 199 MB), refused before decoding starts;
- the decoder's own state: a few reference frames of at most ``max_pixels`` each per
  decoder thread (``decode_threads``), about 3 MB each at 1080p in YUV 4:2:0.

So a request stays under ``VideoLimits.memory_bound_bytes()``:
``3 * max_sampled_pixels + 12 * max_pixels * decode_threads`` bytes (~250 MB with the defaults). Time is bounded by ``max_decode_s``; every limit
raises ``VideoTooLargeError`` with the limit's name. A still image (PNG, JPEG, ...
under any file name) raises ``UnsupportedMediaError``: it is not a video.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from contract.errors import EmptyVideoError, InvalidVideoError, UnsupportedMediaError, VideoTooLargeError

# Image demuxers (``png_pipe``, ``jpeg_pipe``, ``webp_pipe``, ... and ``image2``) and the codecs of still images.
_IMAGE_CODECS = frozenset({"png", "apng", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp", "gif", "qoi", "pam",
                           "ppm", "pgm", "pbm", "sgi", "targa", "dpx", "exr", "hdr", "jpegxl", "avif"})


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on what the critic accepts; every check raises ``VideoTooLargeError``."""

    max_bytes: int = 48 * 1024 * 1024  # its base64 still fits a 64 MiB request
    max_duration_s: float = 60.0
    max_frames: int = 1800
    max_pixels: int = 1920 * 1080  # per frame (width * height)
    max_sampled_pixels: int = 32 * 1920 * 1080  # all kept frames together, after downscaling (x3 bytes)
    max_decode_s: float = 60.0  # wall-clock for one decode, both passes
    decode_threads: int = 2  # codec threads per decode (frame/slice threading); 1 = none

    def __post_init__(self):
        for name in ("max_bytes", "max_duration_s", "max_frames", "max_pixels", "max_sampled_pixels",
                     "max_decode_s", "decode_threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VideoLimits.{name} must be positive")

    def memory_bound_bytes(self) -> int:
        """What one decode may hold: the kept RGB frames plus ~8 YUV 4:2:0 frames of decoder state per thread."""
        return 3 * self.max_sampled_pixels + 12 * self.max_pixels * self.decode_threads


@dataclass
class Video:
    """Decoded frames ``(T, H, W, 3)`` uint8, RGB, with the stream's frame rate."""

    frames: np.ndarray
    fps: float
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


@dataclass
class SampledVideo:
    """The frames a sampling asked for: ``frames[k]`` is frame ``indices[k]`` of ``num_frames``."""

    frames: np.ndarray
    indices: list[int]
    num_frames: int
    fps: float
    meta: dict = field(default_factory=dict)


Selector = Callable[[int, float], Sequence[int]]  # (frame count, fps) -> sorted distinct indices


def decode_video(source: bytes | str | os.PathLike, limits: VideoLimits | None = None) -> Video:
    """Decode every frame of ``source`` (raw bytes or a path) into RGB frames.

    All frames are kept, so ``max_sampled_pixels`` bounds the whole clip. Raises
    ``InvalidVideoError``, ``EmptyVideoError``, ``UnsupportedMediaError`` or ``VideoTooLargeError``.
    """
    s = decode_sampled(source, lambda n, fps: range(n), limits)
    return Video(frames=s.frames, fps=s.fps, meta=s.meta)


def decode_sampled(source: bytes | str | os.PathLike, select: Selector, limits: VideoLimits | None = None,
                   max_side: int | None = None) -> SampledVideo:
    """Decode only the frames ``select(frame_count, fps)`` names, downscaled so no side passes ``max_side``."""
    limits = limits or VideoLimits()
    name = _check_source(source, limits)
    deadline = time.monotonic() + limits.max_decode_s
    counted = None  # frames counted by demuxing, when the header has neither a count nor a duration
    while True:  # one open in the common case; two when the frames must be counted first
        with _open(source, name) as (container, stream):
            fps = _stream_fps(stream)
            _check_metadata(stream, fps, limits)
            hint = counted or _frame_count_hint(stream, fps)
            if hint is None:
                counted = _count_packets(container, stream, limits, name)  # demux only: cheap
                continue
            width, height = stream.codec_context.width, stream.codec_context.height
            wanted = _indices(select, hint, fps)
            size = _out_size(width, height, max_side)
            _check_budget(len(wanted), size, limits)
            kept, count, size = _decode_pass(container, stream, set(wanted), max_side, limits, deadline, name)
            codec = stream.codec_context.name
        break
    if count == 0:
        raise EmptyVideoError(f"{name} decoded to zero frames")
    if count == 1 and codec in _IMAGE_CODECS:
        raise UnsupportedMediaError(f"{name} is a still image ({codec}), not a video")
    if count / fps > limits.max_duration_s:
        raise VideoTooLargeError(f"video lasts {count / fps:.2f}s; the limit is {limits.max_duration_s}s",
                                 limit="max_duration_s", value=count / fps)
    indices = _indices(select, count, fps) if count != hint else wanted
    missing = set(indices) - kept.keys()
    if missing:  # the header lied about the frame count: fetch what the first pass skipped
        _check_budget(len(indices), size, limits)
        with _open(source, name) as (container, stream):
            more, recount, _ = _decode_pass(container, stream, missing, max_side, limits, deadline, name)
        if recount != count:
            raise InvalidVideoError(f"{name} decoded to {count} frames, then to {recount}")
        kept.update(more)
    frames = np.stack([kept[i] for i in indices])
    meta = {"width": width, "height": height, "frame_width": frames.shape[2], "frame_height": frames.shape[1]}
    return SampledVideo(frames=frames, indices=list(indices), num_frames=count, fps=fps, meta=meta)


# ---- pieces ----------------------------------------------------------------------------


def _check_source(source, limits: VideoLimits) -> str:
    """A name for messages, after the byte-size checks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, name = len(source), "<bytes>"
        if size == 0:
            raise EmptyVideoError("the video is empty (0 bytes)")
    else:
        name = os.fspath(source)
        try:
            size = os.path.getsize(name)
        except (OSError, ValueError) as e:
            raise InvalidVideoError(f"cannot read video file {name!r}: {getattr(e, 'strerror', None) or e}") from None
        if size == 0:
            raise EmptyVideoError(f"the video file {name!r} is empty (0 bytes)")
    if size > limits.max_bytes:
        raise VideoTooLargeError(f"video is {size} bytes; the limit is {limits.max_bytes}", limit="max_bytes", value=size)
    return name


class _open:
    """``with _open(source, name) as (container, stream)``: the first video stream, or a typed error."""

    def __init__(self, source, name: str):
        self.source, self.name = source, name

    def __enter__(self):
        src = self.source
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = io.BytesIO(src if isinstance(src, bytes) else bytes(src))  # bytes: shared, not copied
        else:
            src = os.fspath(src)
        try:
            self.container = av.open(src, mode="r")
        except (av.FFmpegError, ValueError, OSError) as e:
            raise InvalidVideoError(f"cannot open {self.name} as a video container: {e}") from None
        fmt = self.container.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):
            self.container.close()
            raise UnsupportedMediaError(f"{self.name} is a still image ({fmt}), not a video")
        if not self.container.streams.video:
            self.container.close()
            raise InvalidVideoError(f"{self.name} has no video stream")
        # a stream whose codec FFmpeg does not know (an unknown or damaged codec tag) has no decoder
        decodable = [s for s in self.container.streams.video if s.codec_context is not None]
        if not decodable:
            self.container.close()
            raise InvalidVideoError(f"{self.name} has no video stream in a codec this service can decode")
        return self.container, decodable[0]

    def __exit__(self, *exc):
        self.container.close()
        return False


def _decode_pass(container, stream, wanted: set[int], max_side, limits: VideoLimits, deadline: float, name: str):
    """Decode the stream in order; RGB-convert only ``wanted``. Returns (kept, frame count, kept frame size)."""
    if limits.decode_threads > 1:
        stream.thread_type, stream.thread_count = "AUTO", limits.decode_threads
    kept: dict[int, np.ndarray] = {}
    size = None
    count = 0
    try:
        for frame in container.decode(stream):
            pixels = frame.width * frame.height
            if pixels > limits.max_pixels:  # checked on every frame: a stream may change size mid-way
                raise VideoTooLargeError(f"frame is {frame.width}x{frame.height} = {pixels} pixels; the limit is "
                                         f"{limits.max_pixels}", limit="max_pixels", value=pixels)
            if count >= limits.max_frames:
                raise VideoTooLargeError(f"video has more than {limits.max_frames} frames", limit="max_frames",
                                         value=count + 1)
            if time.monotonic() > deadline:
                raise VideoTooLargeError(f"decoding took longer than {limits.max_decode_s}s (at frame {count})",
                                         limit="max_decode_s", value=limits.max_decode_s)
            if count in wanted:
                w, h = _out_size(frame.width, frame.height, max_side)
                if size is not None and (w, h) != size:
                    raise InvalidVideoError(f"{name} changes frame size mid-stream ({size} -> {(w, h)})")
                size = (w, h)
                _check_budget(len(kept) + 1, size, limits)  # also where the header gave no size
                kept[count] = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
            count += 1
    except av.FFmpegError as e:
        if count == 0:
            raise InvalidVideoError(f"{name} failed to decode: {e}") from None
        # a truncated tail: keep what decoded (the count is then the true length)
    return kept, count, size


def _indices(select: Selector, count: int, fps: float) -> list[int]:
    idx = [int(i) for i in select(count, fps)]
    if any(not 0 <= i < count for i in idx) or idx != sorted(set(idx)):
        raise ValueError(f"frame selector returned {idx} for {count} frames")  # a bug in the caller, not bad input
    return idx


def _out_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_budget(n: int, size: tuple[int, int] | None, limits: VideoLimits) -> None:
    if size is None or not size[0] or not size[1]:
        return
    pixels = n * size[0] * size[1]
    if pixels > limits.max_sampled_pixels:
        raise VideoTooLargeError(
            f"the sampling keeps {n} frames of {size[0]}x{size[1]} = {pixels} pixels; the limit is "
            f"{limits.max_sampled_pixels} (sample fewer frames)", limit="max_sampled_pixels", value=pixels)


def _frame_count_hint(stream, fps: float) -> int | None:
    """The header's frame count, else one derived from its duration, else None."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return max(1, round(float(stream.duration * stream.time_base) * fps))
    return None


def _count_packets(container, stream, limits: VideoLimits, name: str) -> int:
    """Frames by demuxing alone (no decoding): cheap, and bounded by ``max_frames``."""
    n = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                n += 1
                if n > limits.max_frames:
                    raise VideoTooLargeError(f"video has more than {limits.max_frames} frames", limit="max_frames",
                                             value=n)
    except av.FFmpegError as e:
        if n == 0:
            raise InvalidVideoError(f"{name} failed to demux: {e}") from None
    return max(n, 1)


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not fps or fps <= 0 or fps > 1000:
        raise InvalidVideoError(f"video stream has no usable frame rate ({rate!r})")
    return fps


def _check_metadata(stream, fps: float, limits: VideoLimits) -> None:
    """Reject from the header alone when it already says the video is too large."""
    ctx = stream.codec_context
    if ctx.width and ctx.height and ctx.width * ctx.height > limits.max_pixels:
        raise VideoTooLargeError(
            f"frame is {ctx.width}x{ctx.height} = {ctx.width * ctx.height} pixels; the limit is {limits.max_pixels}",
            limit="max_pixels",
            value=ctx.width * ctx.height,
        )
    if stream.frames and stream.frames > limits.max_frames:
        raise VideoTooLargeError(
            f"video has {stream.frames} frames; the limit is {limits.max_frames}", limit="max_frames", value=stream.frames
        )
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
        if duration > limits.max_duration_s:
            raise VideoTooLargeError(
                f"video lasts {duration:.2f}s; the limit is {limits.max_duration_s}s",
                limit="max_duration_s",
                value=duration,
            )


# ---- encoding ----------------------------------------------------------------------------


def encode_video(frames: np.ndarray, fps: float = 8.0, codec: str = "libx264", qp: int = 18) -> bytes:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames to mp4 bytes (even sizes for yuv420p) at constant
    quantiser ``qp`` (0 lossless .. 51 coarsest)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("cannot encode zero frames")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # constant QP on one thread: libx264's rate control (crf) is not reproducible run to run
        stream.options = {"qp": str(int(qp)), "preset": "veryfast", "threads": "1"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(_rgb_to_yuv420p(arr), format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range conversion in numpy (swscale's result can depend on buffer
    alignment; this makes the same frames encode to the same bytes)."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [y, sub(cb).reshape(h // 4, w), sub(cr).reshape(h // 4, w)] if h % 4 == 0 else None
    if planes is None:  # chroma rows do not fold into whole luma-width rows; lay them out flat
        flat = np.concatenate([y.ravel(), sub(cb).ravel(), sub(cr).ravel()])
        return np.clip(np.round(flat), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)
    return np.clip(np.round(np.concatenate(planes, axis=0)), 0, 255).astype(np.uint8)
