"""Decode video from bytes or a file with PyAV, within explicit limits.

A decoded video is an ``(T, H, W, 3)`` uint8 array plus its frame rate. Limits are
checked from the container's metadata before decoding where it is known, and again
while decoding (metadata can lie), so an oversized upload never fills memory.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import av
import numpy as np

from clients.media import encode_video  # noqa: F401  (re-exported: critic.video.encode_video)
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
