"""Decode video from bytes or a file with PyAV, within explicit limits.

A decoded video is an ``(T, H, W, 3)`` uint8 array plus its frame rate. Limits are
checked from the container's metadata before decoding where it is known, and again
while decoding (metadata can lie), so an oversized upload never fills memory.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from critic.errors import EmptyVideoError, InvalidVideoError, VideoTooLargeError


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on what the critic accepts; every check raises ``VideoTooLargeError``."""

    max_bytes: int = 64 * 1024 * 1024
    max_duration_s: float = 60.0
    max_frames: int = 1800
    max_pixels: int = 1920 * 1080  # per frame (width * height)

    def __post_init__(self):
        for name in ("max_bytes", "max_duration_s", "max_frames", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VideoLimits.{name} must be positive")


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


def decode_video(source: bytes | str | os.PathLike, limits: VideoLimits | None = None) -> Video:
    """Decode every frame of ``source`` (raw bytes or a path) into RGB frames.

    Raises ``InvalidVideoError`` for undecodable input, ``EmptyVideoError`` when no
    frame decodes, ``VideoTooLargeError`` when a limit is passed.
    """
    limits = limits or VideoLimits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
        name = "<bytes>"
        if size == 0:
            raise EmptyVideoError("the video is empty (0 bytes)")
        opener = io.BytesIO(bytes(source))
    else:
        name = os.fspath(source)
        try:
            size = os.path.getsize(name)
        except OSError as e:
            raise InvalidVideoError(f"cannot read video file {name!r}: {e.strerror or e}") from None
        if size == 0:
            raise EmptyVideoError(f"the video file {name!r} is empty (0 bytes)")
        opener = name
    if size > limits.max_bytes:
        raise VideoTooLargeError(
            f"video is {size} bytes; the limit is {limits.max_bytes}", limit="max_bytes", value=size
        )
    try:
        container = av.open(opener, mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise InvalidVideoError(f"cannot open {name} as a video container: {e}") from None
    with container:
        if not container.streams.video:
            raise InvalidVideoError(f"{name} has no video stream")
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        _check_metadata(stream, fps, limits)
        frames = []
        try:
            for frame in container.decode(stream):
                if frame.width * frame.height > limits.max_pixels:
                    raise VideoTooLargeError(
                        f"frame is {frame.width}x{frame.height} = {frame.width * frame.height} pixels; "
                        f"the limit is {limits.max_pixels}",
                        limit="max_pixels",
                        value=frame.width * frame.height,
                    )
                if len(frames) >= limits.max_frames:
                    raise VideoTooLargeError(
                        f"video has more than {limits.max_frames} frames", limit="max_frames", value=len(frames) + 1
                    )
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as e:
            raise InvalidVideoError(f"{name} failed to decode after {len(frames)} frames: {e}") from None
    if not frames:
        raise EmptyVideoError(f"{name} decoded to zero frames")
    video = Video(frames=np.stack(frames), fps=fps, meta={"width": frames[0].shape[1], "height": frames[0].shape[0]})
    if video.duration_s > limits.max_duration_s:
        raise VideoTooLargeError(
            f"video lasts {video.duration_s:.2f}s; the limit is {limits.max_duration_s}s",
            limit="max_duration_s",
            value=video.duration_s,
        )
    return video


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


def encode_video(frames: np.ndarray, fps: float = 8.0, codec: str = "libx264") -> bytes:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames to mp4 bytes (even sizes for yuv420p)."""
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
        stream.options = {"qp": "18", "preset": "veryfast", "threads": "1"}
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
