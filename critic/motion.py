"""VBench's motion signals with a weight-free optical flow (OpenCV's DIS) instead of RAFT and AMT.

VBench (Vchitect/VBench @45e79ec) computes, per video:
- motion smoothness (vbench/motion_smoothness.py): the odd frames are predicted from the even
  ones by a frame interpolator (AMT, L120 and L137-146) and scored ``(255 - mean |pred - odd|) / 255``
  on uint8 RGB (L151-167);
- dynamic degree (vbench/dynamic_degree.py): per consecutive pair, the mean of the top 5% RAFT
  flow magnitudes (L42-56); the video moves when at least ``round(4 * n / 16)`` pairs exceed
  ``6 * min(H, W) / 256`` pixels (L59-61, L84-93), over frames taken at about 8 fps (L99-100);
- the static filter run before temporal flickering (static_filter.py): top 2% magnitudes (L41-55),
  threshold ``3 * min(H, W) / 256``, at most ``round(2 * n / 16)`` moving pairs and the first <-> last
  pairs under ``thres * count_num * 2`` (L58-75, L83);
- the published min-max normalisation of each dimension (scripts/constant.py L64-69,
  scripts/cal_final_score.py L43-50).

Where ours deviates, the metric's name ends in ``_dis``: DIS flow (no weights) replaces RAFT, and a
flow-warping interpolator (Super SloMo's linear flow combination at t = 1/2, no refinement network)
replaces AMT. Flow is computed at a working size whose short side is ``WORK_SIDE`` pixels and
rescaled to the clip's pixels; warping and the error are at full resolution. Dynamic degree
uses the frames it is given (sample at ``fps: 8`` for VBench's rate).
"""

from __future__ import annotations

import cv2
import numpy as np

from contract.errors import InvalidParameterError

WORK_SIDE = 256
# scripts/constant.py L67-69: (min, max) of the published normalisation
NORMALIZE = {"temporal_flickering": (0.6293, 1.0), "motion_smoothness": (0.706, 0.9975), "dynamic_degree": (0.0, 1.0)}


def normalise(dimension: str, value: float) -> float:
    """VBench's min-max normalisation, clipped to [0, 1] (a clip may lie outside the benchmark's range)."""
    lo, hi = NORMALIZE[dimension]
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


class FlowField:
    """DIS flows between frames of one clip, computed once each at the working size."""

    def __init__(self, frames: np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InvalidParameterError(f"expected (T, H, W, 3) frames, got shape {frames.shape}")
        self.frames = frames
        h, w = frames.shape[1:3]
        # working pixels per clip pixel: large clips are shrunk (cost), small ones enlarged (DIS's 8-pixel
        # patches blur the motion of small objects in a 64-pixel frame)
        self.scale = WORK_SIDE / min(h, w)
        size = (round(w * self.scale), round(h * self.scale))
        resample = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        self._gray = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=resample) for f in frames]
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._flows: dict[tuple[int, int], np.ndarray] = {}
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def flow(self, i: int, j: int) -> np.ndarray:
        """Flow from frame i to frame j at the working size, in clip pixels: f_i(x) ~ f_j(x + flow(x))."""
        if (i, j) not in self._flows:
            self._flows[i, j] = self._dis.calc(self._gray[i], self._gray[j], None) / self.scale
        return self._flows[i, j]

    def top_magnitude(self, i: int, j: int, share: float) -> float:
        """Mean of the largest ``share`` of the flow magnitudes (VBench's get_score), in clip pixels."""
        f = self.flow(i, j)
        rad = np.hypot(f[..., 0], f[..., 1]).ravel()
        cut = int(rad.size * share)
        return float(np.partition(rad, rad.size - cut)[rad.size - cut:].mean()) if cut else 0.0

    def full_res(self, flow: np.ndarray) -> np.ndarray:
        h, w = self.frames.shape[1:3]
        return flow if flow.shape[:2] == (h, w) else cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)

    def midpoint(self, i: int, j: int) -> np.ndarray:
        """Frame halfway between frames i and j, from those two only: both warped to t = 1/2 along
        Super SloMo's flows F_t->0 = (F_1->0 - F_0->1) / 4, F_t->1 = -F_t->0, then averaged (uint8)."""
        f01, f10 = self.full_res(self.flow(i, j)), self.full_res(self.flow(j, i))
        ft0 = 0.25 * (f10 - f01)
        if self._grid is None:
            h, w = ft0.shape[:2]
            self._grid = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
        gx, gy = self._grid

        def warp(img, f):
            return cv2.remap(img, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        a, b = warp(self.frames[i], ft0).astype(np.float32), warp(self.frames[j], -ft0).astype(np.float32)
        return np.clip(np.rint(0.5 * (a + b)), 0, 255).astype(np.uint8)


def motion_smoothness_dis(frames: np.ndarray, flows: FlowField | None = None) -> tuple[float, str]:
    """VBench motion smoothness with a DIS-warping interpolator, then VBench's normalisation."""
    if frames.shape[0] < 3:
        raise InvalidParameterError(f"motion_smoothness_dis needs at least 3 sampled frames, got {frames.shape[0]}")
    flows = flows or FlowField(frames)
    errors = [float(cv2.absdiff(flows.midpoint(k, k + 2), frames[k + 1]).mean())
              for k in range(0, frames.shape[0] - 2, 2)]
    raw = (255.0 - float(np.mean(errors))) / 255.0
    return normalise("motion_smoothness", raw), (
        f"odd frames predicted from even ones: mean |error| {np.mean(errors):.2f}/255 over {len(errors)} frames; "
        f"VBench raw {raw:.4f}")


def dynamic_degree_dis(frames: np.ndarray, flows: FlowField | None = None) -> tuple[float, str]:
    """VBench dynamic degree (1 moving, 0 static) on DIS flow."""
    if frames.shape[0] < 2:
        raise InvalidParameterError(f"dynamic_degree_dis needs at least 2 sampled frames, got {frames.shape[0]}")
    flows = flows or FlowField(frames)
    n = frames.shape[0]
    thres = 6.0 * min(frames.shape[1:3]) / 256.0
    # VBench's round(4 * n / 16) is 0 for n <= 2, which calls any clip moving; at least one pair must move here
    count_num = max(1, round(4 * n / 16))
    moving = sum(flows.top_magnitude(k, k + 1, 0.05) > thres for k in range(n - 1))
    score = 1.0 if moving >= count_num else 0.0
    return score, f"{moving} of {n - 1} steps move more than {thres:.2f} px (top-5% flow); {count_num} needed"


def is_static(frames: np.ndarray, flows: FlowField | None = None) -> tuple[bool, str]:
    """VBench's static filter on DIS flow: the clip qualifies for temporal flickering."""
    flows = flows or FlowField(frames)
    n = frames.shape[0]
    thres = 3.0 * min(frames.shape[1:3]) / 256.0
    count_num = round(2 * n / 16)
    steps = [flows.top_magnitude(k, k + 1, 0.02) for k in range(n - 1)]
    ends = [flows.top_magnitude(0, n - 1, 0.02), flows.top_magnitude(n - 1, 0, 0.02)]
    moving = sum(s > thres for s in steps)
    static = moving <= count_num and all(e <= thres * count_num * 2 for e in ends)
    why = (f"{moving} of {n - 1} steps move more than {thres:.2f} px (top-2% flow), {count_num} allowed; "
           f"first<->last {max(ends):.2f} px")
    return static, why
