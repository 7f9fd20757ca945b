"""One way to get a critic: ``load_critic(model, backend=..., options=...)`` (the registry lives in
critic/backends/__init__.py). Without a backend, a model path or hub id gives the transformers VLM
critic and none gives the model-free one."""

from critic.backends import BACKENDS, load_critic

__all__ = ["BACKENDS", "load_critic"]
