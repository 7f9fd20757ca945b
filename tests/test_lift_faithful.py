"""The `lift` rubric asks what LiFT's released critic was trained on, with LiFT's frames and rounding;
our paraphrase lives on as `lift-paraphrase`, which the shipped tiny critic was trained with."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract.errors import InvalidRubricError
from contract.sampling import FrameSampling
from critic.prompting import prompt_layout
from critic.rubrics import get_rubric, parse_rubric

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny"

# CodeGoat24/LiFT @a0d5e56, LiFT-Critic/test/run_critic_13b.py L63-68, transcribed byte for byte;
# L77 asks ``qs = item['caption'] + question_list[i]``.
ORIGINAL_TYPES = ["semantic consistency", "fidelity issues", "motion issues"]
ORIGINAL_QUESTIONS = [
    " Please identify the semantic consistency issues in this video, focusing on the alignment between the text and the visual content. Specifically, point out any discrepancies regarding the subject (e.g., person or animal), quantity, color, scene description, style, and other relevant aspects.",  # noqa: E501
    " Please identify the fidelity issues in this video, assessing the realism of the content, including people, animals, and other objects. Highlight any problems such as missing limbs, deformed hands or faces, or other unrealistic elements.",  # noqa: E501
    " Please identify the motion issues in this video, focusing on the continuity and smoothness of actions, as well as their coherence and adherence to the laws of physics.",  # noqa: E501
]
CAPTION = "A crane stands in a shallow lake at sunset."


def test_lift_questions_are_byte_identical_to_the_released_critics():
    rubric = get_rubric("lift")
    # same order as the original's question_type (our names are identifiers)
    assert len(ORIGINAL_TYPES) == 3 and [d.name for d in rubric.dimensions] == ["semantic_consistency", "fidelity",
                                                                                "motion"]
    for d, original in zip(rubric.dimensions, ORIGINAL_QUESTIONS):
        assert (CAPTION + " " + d.question).encode() == (CAPTION + original).encode()


@pytest.mark.parametrize("frames", [8, 1])
def test_the_rendered_prompt_appends_the_question_to_the_caption(tiny_vlm_path, frames):
    from transformers import AutoProcessor

    layout = prompt_layout(AutoProcessor.from_pretrained(tiny_vlm_path), frames)
    for d, original in zip(get_rubric("lift").dimensions, ORIGINAL_QUESTIONS):
        text = layout.prefix_for(CAPTION) + layout.suffix_for(d.question)
        assert CAPTION + original in text and text.count(CAPTION) == 1


def test_lift_takes_lifts_frames_and_rounds_the_reward():
    rubric = get_rubric("lift")
    assert rubric.frame_sampling(FrameSampling.uniform(8)) == FrameSampling.linspace(8)
    hard = {"semantic_consistency": 0.9, "fidelity": 0.2, "motion": 0.05}
    assert rubric.reward(hard, {}) == 0.38  # round((0.9 + 0.2 + 0.05) / 3, 2), process_reward_score.py L27-28
    assert rubric.reward(hard, hard, source="score") == pytest.approx((0.9 + 0.2 + 0.05) / 3)  # soft: exact
    paraphrase = get_rubric("lift-paraphrase")
    assert paraphrase.reward(hard, {}) == pytest.approx((0.9 + 0.2 + 0.05) / 3) != 0.38
    assert paraphrase.frame_sampling(FrameSampling.uniform(8)) == FrameSampling.uniform(8)


def test_the_paraphrase_keeps_the_shape_and_the_old_wording():
    lift, para = get_rubric("lift"), get_rubric("lift-paraphrase")
    assert [d.name for d in para.dimensions] == [d.name for d in lift.dimensions]
    assert para.labels == lift.labels and para.reward_from == lift.reward_from == "label"
    assert all(d.question.endswith("Answer Good, Normal or Bad, then give the reason.") for d in para.dimensions)


def test_linspace_is_lifts_frame_rule():
    assert FrameSampling.linspace(8).indices(49, 8.0) == [0, 6, 13, 20, 27, 34, 41, 48]
    assert FrameSampling.linspace(8).indices(17, 8.0) == [0, 2, 4, 6, 9, 11, 13, 16]
    assert FrameSampling.linspace(8).indices(5, 8.0) == [0, 1, 2, 3, 4]  # shorter clip: every frame, as VILA
    assert FrameSampling.linspace(1).indices(49, 8.0) == [0]
    assert FrameSampling.linspace(8).describe() == {"strategy": "linspace", "frames": 8}
    # today's uniform never shows the first or last frame
    assert FrameSampling.uniform(8).indices(49, 8.0) == [3, 9, 15, 21, 27, 33, 39, 45]


def test_a_rubric_with_a_bad_sampling_is_refused():
    base = get_rubric("lift").model_dump()
    with pytest.raises(InvalidRubricError, match="sampling"):
        parse_rubric({**base, "sampling": {"strategy": "linspace", "frames": 0}})
    with pytest.raises(InvalidRubricError, match="sampling"):
        parse_rubric({**base, "sampling": {"strategy": "nope"}})
    with pytest.raises(InvalidRubricError):
        parse_rubric({**base, "reward_round": -1})


def test_the_shipped_critic_is_asked_what_it_was_trained_with():
    from critic.vlm import VLMCritic

    trained = json.loads((SHIPPED / "critic_config.json").read_text())
    assert trained["rubric"] == json.loads((SHIPPED / "sft_config.json").read_text())["rubric"] == "lift-paraphrase"
    critic = VLMCritic(SHIPPED, rationale_tokens=0)
    assert critic.default_rubric == "lift-paraphrase" and critic.default_sampling == FrameSampling.uniform(8)


def test_cli_scores_lift_on_lifts_frames(tiny_vlm_path, clips):
    def run(*args):
        p = subprocess.run([sys.executable, "-m", "critic.cli", "score", clips["clean"], "--prompt", "a red ball",
                            "--model", tiny_vlm_path, "--rationale-tokens", "0", *map(str, args)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    out = run("--rubric", "lift")  # the rubric's sampling when none is asked for
    assert out["sampling"] == {"strategy": "linspace", "frames": 8}
    assert out["frame_indices"] == [0, 2, 4, 6, 9, 11, 13, 16] and out["reward"] == round(out["reward"], 2)
    out = run("--rubric", "lift", "--linspace", "4")
    assert out["frame_indices"] == [0, 5, 10, 16]
    out = run("--rubric", "lift-paraphrase")  # no sampling of its own: the critic's default
    assert out["sampling"] == {"strategy": "uniform", "frames": 8}


class _InProcess:
    """The engine's backend interface over a critic in this process (what the model deployment does)."""

    def __init__(self, critic):
        self.critic = critic

    async def score(self, item):
        self.critic.check_input(item)
        return self.critic.score_checked([item])[0]

    async def info(self):
        return self.critic.info()

    async def ready(self):
        return {"ready": True}


def test_service_engine_takes_the_rubrics_sampling_when_the_request_names_none(vlm_critic, clips):
    import asyncio

    from contract.protocol import ScoreRequest
    from contract.sampling import FrameSampling
    from serving.engine import Engine
    from serving.settings import IngressSettings

    engine = Engine(_InProcess(vlm_critic), IngressSettings(allowed_dirs=[str(clips["clean"].parent)]))

    def score(**kw):
        req = ScoreRequest(prompt="a red ball", video_path=str(clips["clean"]), **kw)
        return asyncio.run(engine.score(req)).result.model_dump()

    r = score(rubric="lift")
    assert r["sampling"] == {"strategy": "linspace", "frames": 8} and r["frame_indices"] == [0, 2, 4, 6, 9, 11, 13, 16]
    assert score(rubric="lift-paraphrase")["sampling"] == vlm_critic.default_sampling.describe()
    r = score(rubric="lift", sampling=FrameSampling.linspace(3))
    assert r["frame_indices"] == [0, 8, 16]
    assert score(rubric="lift", sampling=FrameSampling.uniform(8))["sampling"]["strategy"] == "uniform"
