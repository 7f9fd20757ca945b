"""Backend ``transformers``: any Hugging Face image-text-to-text VLM (critic/vlm.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from critic.vlm import VLMCritic


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str | None = Field(None, description="torch device; default cuda when available, else cpu.")
    dtype: str | None = Field(None, description="torch dtype name, e.g. 'bfloat16'; default: the checkpoint's.")
    rationale_tokens: int = Field(32, ge=0, le=512, description="Bound on rationale length; 0 switches it off.")
    max_batch_size: int = Field(8, ge=1, le=256, description="Largest batch of videos in one forward pass.")
    default_rubric: str | None = Field(None, description="Rubric used when a request names none; default: the one "
                                       "the checkpoint was trained with (its critic_config.json), else 'lift'.")


def load(model: str | None, options: Options) -> VLMCritic:
    return VLMCritic(model, **options.model_dump())
