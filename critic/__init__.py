"""LiFT-Critic: score a text-to-video generation against its prompt.

The model knows nothing of serving: build a critic once (``load_critic``), turn videos
into ``ScoreInput`` with ``prepare_input``, score batches with ``Critic.score``.
"""

from critic.base import Critic, compare_results, prepare_input
from critic.errors import (
    CriticError,
    EmptyVideoError,
    InvalidParameterError,
    InvalidRubricError,
    InvalidVideoError,
    ModelLoadError,
    UnknownRubricError,
    UnsupportedMediaError,
    VideoTooLargeError,
)
from critic.loading import load_critic
from critic.rubrics import RUBRICS, Rubric, get_rubric
from critic.sampling import FrameSampling
from critic.types import CompareResult, CriticResult, DimensionResult, ScoreInput
from critic.video import SampledVideo, Video, VideoLimits, decode_sampled, decode_video, encode_video

__all__ = [
    "Critic", "CompareResult", "CriticError", "CriticResult", "DimensionResult", "EmptyVideoError",
    "FrameSampling", "InvalidParameterError", "InvalidRubricError", "InvalidVideoError", "ModelLoadError",
    "RUBRICS", "Rubric", "SampledVideo", "ScoreInput", "UnknownRubricError", "UnsupportedMediaError", "Video", "VideoLimits", "VideoTooLargeError",
    "compare_results", "decode_sampled", "decode_video", "encode_video", "get_rubric", "load_critic", "prepare_input",
]
