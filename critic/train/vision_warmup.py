"""Stage 1 of training a critic from random weights: warm up the vision tower and connector.

Real critics (LiFT-Critic) start from a pretrained VLM. The tiny offline critic starts from
random weights, and there the language model reads the images almost only through an
average over image tokens (attention is nearly uniform at first). At random init that
average says next to nothing about blur, noise or flicker, so SFT sits at the majority label
for thousands of steps. This stage fixes the features first, in the spirit of LLaVA's
stage 1 (align the vision side before instruction tuning): the image tokens' mean and a bag
of the prompt's tokens go through a small head that predicts every dimension's label, and
the vision tower and connector learn from the same ratings. The head is then dropped; SFT
(stage 2) trains the whole VLM from the warmed-up tower.
"""

from __future__ import annotations

import torch
from torch import nn

from contract.errors import InvalidParameterError


class PooledProbe(nn.Module):
    """[mean image token ; bag of prompt tokens] -> MLP -> one label distribution per dimension."""

    def __init__(self, hidden: int, vocab_size: int, num_dimensions: int, num_labels: int):
        super().__init__()
        self.prompt = nn.EmbeddingBag(vocab_size, hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.GELU(),
                                  nn.Linear(2 * hidden, num_dimensions * num_labels))
        self.shape = (num_dimensions, num_labels)

    def forward(self, image_tokens: torch.Tensor, prompt_ids: list[list[int]]) -> torch.Tensor:
        """``image_tokens`` (videos, tokens, hidden) -> logits (videos, dimensions, labels)."""
        flat = torch.tensor([t for ids in prompt_ids for t in ids], device=image_tokens.device)
        offsets = torch.tensor([0] + [len(ids) for ids in prompt_ids[:-1]], device=image_tokens.device).cumsum(0)
        x = torch.cat([image_tokens.mean(1), self.prompt(flat, offsets)], dim=-1)
        return self.head(x).view(len(prompt_ids), *self.shape)


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
