"""LiFT-Critic: score a text-to-video generation against its prompt.

The model knows nothing of serving: build a critic once (``load_critic``), turn videos
into ``ScoreInput`` with ``prepare_input``, score batches with ``Critic.score``. What it takes
and returns on the wire (sampling, results, errors, video decoding) is the ``contract`` package.
"""

from critic.base import Critic, compare_results, prepare_input
from critic.loading import load_critic
from critic.rubrics import RUBRICS, Rubric, get_rubric
from critic.types import ScoreInput

__all__ = ["Critic", "RUBRICS", "Rubric", "ScoreInput", "compare_results", "get_rubric", "load_critic",
           "prepare_input"]
