"""Stage 1 of training a critic from random weights: warm up the vision tower and connector.

Real critics (LiFT-Critic) start from a pretrained VLM. The tiny offline critic starts from
random weights, and there the language model reads the images almost only through an
average over image tokens (attention is nearly uniform at first). At random init that
average says next to nothing about blur, noise or flicker, so SFT sits at the majority label
for thousands of steps. This stage fixes the features first, in the spirit of LLaVA's
stage 1 (align the vision side before instruction tuning): each frame's mean image token, the
tokens' change from frame to frame and a bag of the prompt's tokens go through a small head that
predicts every dimension's label, and the vision tower and connector learn from the same ratings.
The head is then dropped; SFT (stage 2) trains the whole VLM from the warmed-up tower.
"""

from __future__ import annotations

import torch
from torch import nn

from contract.errors import InvalidParameterError
from contract.sampling import FrameSampling


class PooledProbe(nn.Module):
    """[each frame's mean image token ; the mean absolute change of every image token from one frame to the
    next ; bag of prompt tokens] -> MLP -> one label distribution per dimension.

    The per-frame means keep where things are over time (reversed motion, jumps); the token-wise temporal
    change separates what changes from frame to frame (noise, flicker, freezes) from what does not (a
    textured background, compression of a still scene), which a mean over all tokens averages away: on the
    randomised domain (critic/data/randomised.py) a head on the plain mean stayed near the majority label
    for fidelity and motion (0.35 / 0.44 held out after 1,000 steps) where this one reached 0.55 / 0.59
    after 500."""

    def __init__(self, hidden: int, vocab_size: int, num_dimensions: int, num_labels: int, frames: int):
        super().__init__()
        self.frames = frames
        self.prompt = nn.EmbeddingBag(vocab_size, hidden)
        width = hidden * (frames + max(frames - 1, 0) + 1)
        self.head = nn.Sequential(nn.Linear(width, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, num_dimensions * num_labels))
        self.shape = (num_dimensions, num_labels)

    def forward(self, image_tokens: torch.Tensor, prompt_ids: list[list[int]]) -> torch.Tensor:
        """``image_tokens`` (videos, frames x tokens per frame, hidden) -> logits (videos, dimensions, labels)."""
        videos, _, hidden = image_tokens.shape
        x = image_tokens.view(videos, self.frames, -1, hidden)
        change = (x[:, 1:] - x[:, :-1]).abs().mean(2)
        flat = torch.tensor([t for ids in prompt_ids for t in ids], device=image_tokens.device)
        offsets = torch.tensor([0] + [len(ids) for ids in prompt_ids[:-1]], device=image_tokens.device).cumsum(0)
        z = torch.cat([x.mean(2).flatten(1), change.flatten(1), self.prompt(flat, offsets)], dim=-1)
        return self.head(z).view(videos, *self.shape)


class AttributeCode:
    """The warm-up's second target, for synthetic sets whose rows say what each clip shows (``shown``) and
    where its objects are (``track``): the first ``width`` channels of every image token are pulled (squared
    error) towards a code of those facts: a one-hot channel per attribute value seen in training (e.g. 9
    colours + 3 shapes + 3 counts + 6 backgrounds + 5 fidelity defects = 26 channels), then two channels
    holding the (x, y) of the objects in the token's frame (scaled to [-1, 1]; frames picked as the critic
    reads them, ``FrameSampling.uniform(frames)``; a clip shorter than that has no track target).

    Why: a language model trained from random weights learns to compare the prompt's words with a clean
    code in the image tokens, but not with features from which a trained head can read the same facts
    (probes in branch ``grounding-experiment``: perfect codes 0.85 semantic accuracy held out, features
    with colour and count linearly decodable at 0.96-0.99 only the background rule, 0.54). With this
    target the tower writes such a code itself. The same held for fidelity and motion: without the defect
    and the track in the code the shipped critic called almost every blurred clip Good and missed reversed
    motion in three of the four directions, on its own training clips too; with them (``holds``), the
    shipped recipe gained fidelity but lost semantic consistency (README), so it pins the four attributes. The vocabulary is the training
    set's; a value it never saw has no channel, so the code is for the synthetic vocabulary a tiny critic
    learns, nothing more."""

    def __init__(self, shown: list[dict[str, str] | None], tracks: list[list | None] | None = None, frames: int = 8,
                 holds: list[str] | None = None, track_weight: float = 1.0):
        """``holds``: what the code carries, names of ``shown`` attributes and ``track``; None: all the rows have.
        ``track_weight``: the track channels' squared error counts this many times an attribute channel's."""
        tracks = tracks if tracks is not None else [None] * len(shown)
        if holds is not None:
            carried = {k for s in shown if s for k in s} | ({"track"} if any(tracks) else set())
            if missing := sorted(set(holds) - carried):
                raise InvalidParameterError(f"the attribute code cannot hold {missing}: no training row has them "
                                            f"(rows have {sorted(carried)})")
            shown = [{k: v for k, v in s.items() if k in holds} if s else s for s in shown]
            tracks = tracks if "track" in holds else [None] * len(shown)
        names = sorted({k for s in shown if s for k in s})
        self.values = [(k, v) for k in names for v in sorted({s[k] for s in shown if s and k in s})]
        self.attributes = len(self.values)
        self.frames = frames
        self.track_weight = track_weight
        index = {kv: i for i, kv in enumerate(self.values)}
        self.targets = torch.zeros(len(shown), self.attributes)
        self.known = torch.tensor([bool(s) for s in shown])
        for row, s in enumerate(shown):
            for kv in (s or {}).items():
                self.targets[row, index[kv]] = 1.0
        view = FrameSampling.uniform(frames)
        self.tracked = torch.tensor([bool(t) and len(t) >= frames for t in tracks])
        self.track = torch.zeros(len(shown), frames, 2)
        for row, t in enumerate(tracks):
            if self.tracked[row]:
                self.track[row] = torch.tensor([t[i] for i in view.indices(len(t), 1.0)]) * 2 - 1
        self.width = self.attributes + (2 if self.tracked.any() else 0)
        self.has_target = self.known | self.tracked  # rows the code says anything about

    def loss(self, image_tokens: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Squared error summed over the code's channels a row has (the track's weighted ``track_weight``),
        averaged over the tokens of the rows that have any."""
        known, tracked, keep = self.known[rows], self.tracked[rows], self.has_target[rows]
        if not keep.any():
            return image_tokens.sum() * 0.0
        x = image_tokens[keep.to(image_tokens.device)]
        y = self.targets[rows][keep].to(x.device).unsqueeze(1)
        err = ((x[..., : self.attributes] - y) ** 2).sum(-1) * known[keep].to(x.device).unsqueeze(1)
        if self.width > self.attributes:
            pos = x[..., self.attributes : self.width].reshape(len(x), self.frames, -1, 2)
            where = self.track[rows][keep].to(x.device).unsqueeze(2)
            off = ((pos - where) ** 2).sum(-1).reshape(len(x), -1)
            err = err + self.track_weight * off * tracked[keep].to(x.device).unsqueeze(1)
        return err.mean()


def image_tokens(model, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The embeddings the language model receives for a batch of videos: (videos, tokens, hidden)."""
    get = getattr(model, "get_image_features", None) or getattr(getattr(model, "model", None), "get_image_features", None)
    if get is None:
        raise InvalidParameterError(f"{type(model).__name__} has no get_image_features; vision warm-up needs it")
    out = get(pixel_values=pixel_values, pixel_attention_mask=pixel_attention_mask)
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    return feats.reshape(pixel_values.shape[0], -1, feats.shape[-1])


def vision_parameters(model) -> list[nn.Parameter]:
    """The vision tower's and connector's parameters (everything but the language model)."""
    text = model.get_decoder() if hasattr(model, "get_decoder") else None
    text_ids = {id(p) for p in text.parameters()} if text is not None else set()
    head = model.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    return [p for p in model.parameters() if id(p) not in text_ids | head_ids]
