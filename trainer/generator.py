"""The generator: a diffusers CogVideoX pipeline (local folder or hub id), LoRA on its transformer.

``build_tiny_cogvideox`` makes tiny random components offline (a T5 encoder with a locally
trained unigram tokenizer, a 2-layer transformer, a small VAE) and saves them as a pipeline
folder, so tests and the demo load it through the same ``from_pretrained`` as CogVideoX-2B.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _unigram_vocab(size: int = 400) -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = ("a an two the red blue yellow white purple orange green grey sand water grass road sky ball balls "
             "square squares moves move from left to right over bright dark sunny night scene day light").split()
    corpus = [" ".join(words)] * 50
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=size, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>"))
    return [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]


def build_tiny_cogvideox(out: str | os.PathLike, seed: int = 0) -> Path:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(seed)
    tokenizer = T5Tokenizer(vocab=_unigram_vocab(), extra_ids=0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                           num_heads=4, pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id))
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
        text_embed_dim=32, num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=32, use_rotary_positional_embeddings=True,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 16, 16), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4, sample_height=64, sample_width=64,
    )
    scheduler = CogVideoXDDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing",
                                       rescale_betas_zero_snr=True)
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    out = Path(out)
    pipe.save_pretrained(out)
    return out


def load_pipeline(path: str | os.PathLike, device: str | None = None, dtype: torch.dtype | None = None):
    """CogVideoXPipeline from a folder or hub id (bf16 on GPU by default, fp32 on CPU)."""
    from diffusers import CogVideoXPipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    pipe = CogVideoXPipeline.from_pretrained(os.fspath(path), dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.vae, pipe.text_encoder, pipe.transformer):
        module.requires_grad_(False)
    return pipe


def add_lora(pipe, rank: int = 8, alpha: int | None = None, targets: list[str] | None = None) -> None:
    """LoRA on the transformer's attention projections; only these weights train."""
    from peft import LoraConfig

    pipe.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights=True,
                                            target_modules=targets or LORA_TARGETS))


def lora_state_dict(pipe) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(pipe.transformer)


def save_lora(pipe, out: str | os.PathLike) -> Path:
    from diffusers import CogVideoXPipeline

    out = Path(out)
    CogVideoXPipeline.save_lora_weights(out, transformer_lora_layers=lora_state_dict(pipe))
    return out


def load_lora(pipe, path: str | os.PathLike, name: str = "aligned") -> None:
    pipe.load_lora_weights(os.fspath(path), adapter_name=name)
