"""Build tiny random VLM checkpoints offline, for tests, the demo and benchmarks.

The tokenizer is a byte-level BPE trained here on local text; the checkpoint is saved
with ``save_pretrained`` (model + processor) and loads back through exactly the code a
real checkpoint uses (``AutoProcessor`` / ``AutoModelForImageTextToText``).
Idefics3 (SmolVLM), Qwen2-VL, Qwen2.5-VL and LLaVA-OneVision build and load without torchvision
(critic.loading); ``build_tiny_clip`` builds dual encoders for the image-reward backend.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from critic.rubrics import RUBRICS

# Sizes: "tiny" for tests (~0.3M parameters), "critic" for the trained embedded critic,
# "small" for benchmarks (a vision tower
# and a prefix that cost something relative to one decoding step, as in real models).
PRESETS = {
    "tiny": dict(image_size=32, patch_size=8, vision_hidden=32, vision_layers=1, hidden=64, layers=2, heads=4),
    # vision_ln_eps: a LayerNorm epsilon near the tower's activation scale keeps part of each patch's magnitude
    # (noise and blur energy), which unit normalisation erases; it makes the critic's vision warm-up converge
    # several times faster (critic/train/vision_warmup.py).
    # 8 query heads of 32 dimensions, a key/value head each: comparing the prompt's words with image tokens
    # needs independent key/value heads (binding probes, branch grounding-experiment), and vLLM's CPU
    # attention takes no 16-dimensional heads
    "critic": dict(image_size=64, patch_size=8, vision_hidden=64, vision_layers=2, hidden=128, layers=2, heads=8,
                   kv_heads=8, head_dim=32, vision_ln_eps=1.0),
    "small": dict(image_size=224, patch_size=14, vision_hidden=192, vision_layers=4, hidden=256, layers=4, heads=8),
}

_WORDS = """a an the one two three four five red green blue yellow white black orange purple
ball cube square circle triangle star car dog cat bird crane person hand face tree house
rolls moves jumps spins falls flies walks runs stays left right up down across slowly quickly
on in under over grass road sky water field room table background scene style
video frame frames motion smooth jerky flicker flickers freezes frozen jumps reversed
blurry blur noisy noise blocky artefacts sharp clear realistic deformed missing wrong colour count
object objects shape shapes matches match does not is are was were generated shown appears
Good Normal Bad Answer then give reason the video shows what text describes 1 2 3 4 5
The There no nothing everything consistent inconsistent correct incorrect too many few""".split()


def _corpus() -> list[str]:
    lines = [" ".join(_WORDS)]
    # the words of the rubrics a VLM or the pixel metrics answer (the corpus, hence every tiny tokenizer
    # and model, stays as it was when image-reward rubrics, texts for a dual encoder, were added)
    for rubric in (r for r in RUBRICS.values() if r.critic != "image-reward"):
        for d in rubric.dimensions:
            lines.append(d.question)
        lines.append(" ".join(f"{lab.name}." for lab in rubric.labels))
    for lab in ("Good", "Normal", "Bad", "1", "2", "3", "4", "5"):
        lines.append(f"Assistant: {lab}. The video shows a red ball rolling on the grass.")
    return lines * 20


def build_tokenizer(vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
               "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]})
    return fast


# SmolVLM's chat layout: "<|im_start|>User:<image>...text<end_of_utterance>\nAssistant: answer"
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


# Weights of the tiny VLMs that check scoring are drawn 10x wider than transformers' default (0.02): attention is then
# sharp enough that wrong positions or a wrong cache change the label probabilities well beyond 1e-4
# (tests/test_architectures.py checks that), where default-scale random weights barely notice.
SHARP_INIT = 0.2


def build_tiny_idefics3(out: str | os.PathLike, preset: str = "tiny", seed: int = 0, sharp: bool = False) -> Path:
    """Tiny Idefics3 (SmolVLM); ``sharp``: weights drawn at ``SHARP_INIT`` (see there)."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration
    from transformers.models.idefics3 import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    p = PRESETS[preset]
    out = Path(out)
    tok = build_tokenizer()
    scale = 2
    seq_len = (p["image_size"] // p["patch_size"]) ** 2 // scale**2
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": p["image_size"]},
        max_image_size={"longest_edge": p["image_size"]},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=seq_len, chat_template=IDEFICS3_CHAT_TEMPLATE
    )
    config = Idefics3Config(
        vision_config=dict(
            hidden_size=p["vision_hidden"], intermediate_size=2 * p["vision_hidden"],
            num_hidden_layers=p["vision_layers"], num_attention_heads=max(2, p["vision_hidden"] // 32),
            image_size=p["image_size"], patch_size=p["patch_size"], layer_norm_eps=p.get("vision_ln_eps", 1e-6),
        ),
        text_config=dict(
            model_type="llama", vocab_size=len(tok), hidden_size=p["hidden"], intermediate_size=2 * p["hidden"],
            num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
            num_key_value_heads=p.get("kv_heads", p["heads"] // 2), head_dim=p.get("head_dim", p["hidden"] // p["heads"]),
            max_position_embeddings=4096, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, tie_word_embeddings=False,
        ),
        scale_factor=scale,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
        **({"initializer_range": SHARP_INIT} if sharp else {}),
    )
    if sharp:
        config.text_config.initializer_range = SHARP_INIT
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# Qwen2-VL's chat layout: "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>...text<|im_end|>\n<|im_start|>assistant\n"
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LLaVA-OneVision's (Qwen2 text model): the same turns, images as "<image>"
LLAVA_OV_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>")


def _save(model, processor, out: Path) -> Path:
    from critic.loading import save_processor

    model.generation_config.eos_token_id = [processor.tokenizer.eos_token_id,
                                            processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_processor(processor, out)
    return out


def build_tiny_qwen2_vl(out: str | os.PathLike, seed: int = 0, version: str = "2") -> Path:
    """Tiny Qwen2-VL (``version`` "2") or Qwen2.5-VL ("2.5"): 3-D multimodal rotary positions. The
    processor is saved without a video processor (``critic.loading``), so it loads without torchvision."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from critic.loading import images_only

    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                         "<|video_pad|>", "<|im_end|>"]})
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, initializer_range=SHARP_INIT)
    ids = dict(image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
               video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
               vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"), initializer_range=SHARP_INIT)
    vision = dict(depth=1, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    if version == "2.5":
        config = Qwen2_5_VLConfig(text_config=text, vision_config=dict(
            **vision, hidden_size=32, intermediate_size=64, out_hidden_size=64, fullatt_block_indexes=[0]), **ids)
        model_cls, processor_cls = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    elif version == "2":
        config = Qwen2VLConfig(text_config=text, vision_config=dict(**vision, embed_dim=32, hidden_size=64, mlp_ratio=2),
                               **ids)
        model_cls, processor_cls = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    else:
        raise ValueError(f"unknown Qwen-VL version {version!r}; use '2' or '2.5'")
    torch.manual_seed(seed)
    processor = images_only(processor_cls)(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112), tokenizer=tok,
        video_processor=None, chat_template=QWEN_CHAT_TEMPLATE)
    return _save(model_cls(config), processor, Path(out))


def build_tiny_qwen2_5_vl(out: str | os.PathLike, seed: int = 0) -> Path:
    return build_tiny_qwen2_vl(out, seed, version="2.5")


def build_tiny_llava_onevision(out: str | os.PathLike, seed: int = 0) -> Path:
    """Tiny LLaVA-OneVision (SigLIP tower, Qwen2 text model, anyres at one 32x32 tile)."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    from critic.loading import images_only

    size, patch = 32, 8
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<video>", "<|im_end|>"]})
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=size, patch_size=patch),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, initializer_range=SHARP_INIT),
        initializer_range=SHARP_INIT,
        image_token_index=tok.convert_tokens_to_ids("<image>"), video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_grid_pinpoints=[[size, size]],
        vision_aspect_ratio="anyres_max_9",
    )
    torch.manual_seed(seed)
    processor = images_only(LlavaOnevisionProcessor)(
        image_processor=LlavaOnevisionImageProcessorPil(size={"height": size, "width": size},
                                                        image_grid_pinpoints=[[size, size]]),
        tokenizer=tok, video_processor=None, chat_template=LLAVA_OV_CHAT_TEMPLATE,
        num_image_tokens=(size // patch) ** 2, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    return _save(LlavaOnevisionForConditionalGeneration(config), processor, Path(out))


def build_tiny_clip(out: str | os.PathLike, seed: int = 0, image_size: int = 32, arch: str = "clip") -> Path:
    """Tiny random dual encoder for the image-reward backend: ``arch`` "clip" (CLIPModel, CLIP's
    image-processor settings: resize shortest edge + centre crop) or "siglip" (SiglipModel: square
    resize, mean/std 0.5); our BPE tokenizer, each text framed by bos ... eos (CLIP pools at eos)."""
    from tokenizers import processors
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    out = Path(out)
    tok = build_tokenizer()
    tok.add_special_tokens({"eos_token": "<|endoftext_clip|>"})  # id 2 would make CLIP pool by its legacy argmax
    bos, eos = tok.bos_token, tok.eos_token
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tok.bos_token_id), (eos, tok.eos_token_id)])
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=32, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=8)
    torch.manual_seed(seed)
    if arch == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                                crop_size={"height": image_size, "width": image_size})
    elif arch == "siglip":
        model = SiglipModel(SiglipConfig(text_config={**text, "projection_size": 32}, vision_config=vision))
        image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(f"unknown dual-encoder arch {arch!r}; use 'clip' or 'siglip'")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out


BUILDERS = {"idefics3": build_tiny_idefics3, "qwen2_vl": build_tiny_qwen2_vl, "qwen2_5_vl": build_tiny_qwen2_5_vl,
            "llava_onevision": build_tiny_llava_onevision, "clip": build_tiny_clip}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Build a tiny random VLM checkpoint offline.")
    ap.add_argument("out")
    ap.add_argument("--arch", choices=sorted(BUILDERS), default="idefics3")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    args = ap.parse_args(argv)
    kwargs = {"preset": args.preset} if args.arch == "idefics3" else {}
    print(BUILDERS[args.arch](args.out, **kwargs))


if __name__ == "__main__":
    main()
