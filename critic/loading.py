"""Getting a critic and a VLM's processor.

``load_critic(model, backend=..., options=...)`` builds a critic from the registry in
critic/backends/__init__.py (without a backend, a model path or hub id gives the transformers
VLM critic and none gives the model-free one).

``load_processor`` is ``AutoProcessor`` where it works. Processors of video-capable VLMs
(Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision) also build a video processor, and those need a working
torchvision, which CPU machines often lack (PyPI's CUDA wheels fail to import on CPU torch). The
critic sends frames as images only, so there the same processor class is built without its video
processor, from the checkpoint's own image processor (the PIL implementation), tokenizer, chat
template and processor settings: the same token expansion and pixel values.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from critic.backends import BACKENDS, load_critic

__all__ = ["BACKENDS", "images_only", "load_critic", "load_processor", "save_processor", "torchvision_available"]


def torchvision_available() -> bool:
    try:
        import torchvision

        torchvision.ops.nms  # the CUDA wheels on CPU torch fail here or at import
        return True
    except Exception:
        return False


@cache
def images_only(processor_cls: type) -> type:
    """``processor_cls`` that accepts ``video_processor=None`` (frames go in as images only)."""

    class ImagesOnly(processor_cls):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = processor_cls.__name__
    return ImagesOnly


def _settings(processor) -> dict:
    """The processor's own settings (not its components'), as ``processor_config.json`` holds them."""
    attrs = set(type(processor).get_attributes()) | {"chat_template", "audio_tokenizer"}
    return {k: v for k, v in processor.to_dict().items() if k not in attrs}


def save_processor(processor, out: str | os.PathLike) -> None:
    """Save a processor whose video processor may be absent, so that ``AutoProcessor`` (where
    torchvision works) and ``load_processor`` (anywhere) load it back."""
    if getattr(processor, "video_processor", True) is not None:
        processor.save_pretrained(out)
        return
    out = Path(out)
    processor.image_processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    if processor.chat_template:
        (out / "chat_template.jinja").write_text(processor.chat_template)
    (out / "processor_config.json").write_text(json.dumps(_settings(processor), indent=2, sort_keys=True) + "\n")


def load_processor(path: str | os.PathLike):
    """``AutoProcessor.from_pretrained(path)``; without a working torchvision, the images-only build."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(os.fspath(path))
    except Exception:
        if torchvision_available() or not Path(path).is_dir():
            raise
    return _images_only_processor(Path(path))


def _images_only_processor(path: Path):
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    settings = json.loads((path / "processor_config.json").read_text()) if (path / "processor_config.json").is_file() else {}
    name = settings.pop("processor_class", None) or json.loads((path / "tokenizer_config.json").read_text()).get("processor_class")
    if name is None or not hasattr(transformers, name):
        raise ValueError(f"{path} names no processor class transformers knows ({name!r})")
    template = path / "chat_template.jinja"
    chat_template = template.read_text() if template.is_file() else None
    if chat_template is None and (path / "chat_template.json").is_file():
        chat_template = json.loads((path / "chat_template.json").read_text())["chat_template"]
    return images_only(getattr(transformers, name))(
        image_processor=AutoImageProcessor.from_pretrained(path), tokenizer=AutoTokenizer.from_pretrained(path),
        video_processor=None, chat_template=chat_template, **settings)
