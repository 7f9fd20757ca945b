"""Encode frames to mp4 with PyAV, for callers that send generated videos (the trainer, other
teams' generators). Deterministic: the same frames always give the same bytes."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


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


def read_frames(path) -> tuple[np.ndarray, float]:
    """All frames of a local video file as ``(T, H, W, 3)`` uint8 RGB, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        fps = float(stream.average_rate or 8)
    if not frames:
        raise ValueError(f"{path} has no frames")
    return np.stack(frames), fps
