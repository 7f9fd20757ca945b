"""Every supported VLM architecture is scored correctly: the shared-prefix path (one prefix
forward, cached questions, cached greedy rationale) gives the label probabilities and the
rationale a plain forward of the full sequence without any cache gives, alone and in a padded
batch. Tiny random models built offline; no torchvision needed (Qwen's processor is built
from its image processor, critic.loading)."""

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

import critic.vlm
from contract.sampling import FrameSampling
from critic import prepare_input
from critic.tiny import build_tiny_idefics3, build_tiny_llava_onevision, build_tiny_qwen2_5_vl, build_tiny_qwen2_vl
from critic.vlm import VLMCritic

pytestmark = pytest.mark.timeout(900)
ARCHS = {"idefics3": partial(build_tiny_idefics3, sharp=True), "qwen2_vl": build_tiny_qwen2_vl, "qwen2_5_vl": build_tiny_qwen2_5_vl,
         "llava_onevision": build_tiny_llava_onevision}
RATIONALE = 5
PROMPTS = ["a red ball", "a red ball rolls across the grass on a sunny day", "two cats"]


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request, tmp_path_factory, clips):
    """(name, critic, three items with prompts of different lengths, their reference answers)."""
    path = ARCHS[request.param](tmp_path_factory.mktemp("arch") / request.param)
    critic = VLMCritic(path, rationale_tokens=RATIONALE, device="cpu")
    items = [prepare_input(clips[c], p, "lift", FrameSampling.uniform(3))
             for c, p in zip(("clean", "flicker", "blur"), PROMPTS)]
    return request.param, critic, items, [reference(critic, it) for it in items]


@torch.inference_mode()
def reference(critic: VLMCritic, item) -> dict:
    """Per dimension: label probabilities and greedy rationale from full forwards without a cache."""
    n = len(item.frames)
    layout, plans = critic._layout(n), critic._plan(item.rubric, n)
    enc = critic.processor(text=[layout.prefix_for(item.prompt)], images=[[Image.fromarray(f) for f in item.frames]],
                           return_tensors="pt")
    fixed = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}

    def last_logits(tail: list[int]) -> torch.Tensor:
        ids = torch.cat([enc["input_ids"], torch.tensor([tail])], dim=1)
        extra = {"mm_token_type_ids": torch.cat([enc["mm_token_type_ids"], torch.zeros(1, len(tail), dtype=torch.long)],
                                                dim=1)} if "mm_token_type_ids" in enc else {}
        out = critic.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, **fixed, **extra)
        return out.logits[0, -1].float()

    answers = {}
    for plan in plans:
        tail = list(plan.context_ids)
        probs = torch.softmax(last_logits(tail)[plan.label_first], dim=-1).double().numpy()
        c = int(np.argmax(probs))
        tail += [plan.label_first[c]] + plan.label_rest[c]
        generated = []
        for _ in range(RATIONALE):
            t = int(last_logits(tail).argmax())
            if t in critic._stop_ids:
                break
            generated.append(t)
            tail.append(t)
        answers[plan.dimension.name] = (probs, critic.tokenizer.decode(generated, skip_special_tokens=True).strip())
    return answers


def _gap(results, expected) -> float:
    """Largest label-probability difference from the reference."""
    return max(float(np.abs(np.array(list(r.dimensions[n].probabilities.values())) - probs).max())
               for r, e in zip(results, expected) for n, (probs, _) in e.items())


def _check(results, expected):
    assert _gap(results, expected) <= 1e-4
    for r, e in zip(results, expected):
        assert {n: d.rationale for n, d in r.dimensions.items()} == {n: why for n, (_, why) in e.items()}


def test_shared_prefix_equals_full_forward_alone_and_in_a_padded_batch(arch):
    name, critic, items, expected = arch
    _check(critic.score(items[:1]), expected[:1])
    _check(critic.score(items), expected)  # prompts of different lengths: left padding inside the batch
    assert any(why for e in expected for _, why in e.values()), f"{name}: no rationale tokens; a vacuous comparison"


def test_the_comparison_catches_wrong_positions(arch, monkeypatch):
    """The tiny models are sharp enough that positions which ignore the padding (1-D archs) or the
    3-D multimodal grid (Qwen) move the probabilities far past the tolerance."""
    name, critic, items, expected = arch
    if name.startswith("qwen"):
        monkeypatch.setattr(critic, "_prefix_positions", lambda enc: (critic_vlm_positions(enc["attention_mask"]), None))
    else:
        monkeypatch.setattr(critic_vlm, "_positions", lambda m: torch.arange(m.shape[1]).expand(m.shape[0], -1))
    assert _gap(critic.score(items), expected) > 1e-3


critic_vlm = critic.vlm
critic_vlm_positions = critic.vlm._positions
