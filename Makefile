# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, pinned: a bare `torch` requirement would pull the CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= serving,training,dev
MODELS := .cache/models
TINY := $(MODELS)/tiny-idefics3
PYTEST_ARGS ?=

.PHONY: install models demo test bench critic align clean

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

align: install models
	$(BIN)/lift-train --config trainer/configs/brightness_rwr.yaml

demo: install models
	$(BIN)/python -m serving.demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install models
	$(BIN)/python bench/bench_prefix_reuse.py
	$(BIN)/python bench/bench_service.py

# Synthetic rated set + critic SFT + held-out evaluation (minutes on CPU).
critic: install
	$(BIN)/lift-critic synth .cache/synth --n 1200 --seed 1 --name train.jsonl > /dev/null
	$(BIN)/lift-critic synth .cache/synth --n 100 --seed 2 --name val.jsonl > /dev/null
	$(BIN)/lift-critic synth .cache/synth --n 200 --seed 3 --name test.jsonl > /dev/null
	$(BIN)/lift-critic train --config critic/train/configs/lift_critic_tiny.yaml
	$(BIN)/lift-critic eval --model .cache/critic-sft/final --data .cache/synth/test.jsonl --baseline .cache/synth/train.jsonl > .cache/critic-sft/eval.json

clean:
	rm -rf $(VENV) .cache .pytest_cache
