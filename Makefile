# Two commands for a newcomer:  `make run` (set up + run the main sweep)  and  `make test`.
# Both are idempotent: set-up runs again only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-slow test-grid lint bench clean robustbench

setup: $(STAMP)

# torch first: where an NVIDIA GPU answers, the CUDA build from PyPI; otherwise the CPU build: the
# local 2.13.0+cpu wheel these machines carry (pinned with its local label, so PyPI's CUDA build of
# 2.13.0 can never be picked; its dependencies come from the configured index), else PyTorch's CPU
# index (no gigabytes of CUDA wheels).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing CUDA torch"; $(PY) -m pip install -q "torch>=2.4"; \
	elif $(PY) -m pip install -q "torch==2.13.0+cpu" 2>/dev/null; then \
		echo "installed local CPU torch 2.13.0+cpu"; \
	else \
		$(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	$(PY) sweep.py wrn_depth_grid

# The [robustbench] extra (robustbench: checkpoints) beside the installed torch: that torch version is
# pinned, so pip picks its torchvision and never swaps a CPU torch for a CUDA one; a CPU torch also
# reads PyTorch's CPU index, whose torchvision loads without CUDA (PyPI's does not). Then a check.
TORCH_PIN = $$($(PY) -c 'import torch; print(torch.__version__)')
CPU_INDEX = $$($(PY) -c 'import torch; print("" if torch.version.cuda else "--extra-index-url https://download.pytorch.org/whl/cpu")')

robustbench: setup
	$(PY) -m pip install -q -e ".[robustbench]" "torch==$(TORCH_PIN)" $(CPU_INDEX)
	@$(PY) -c "import robustbench" 2>/dev/null || { echo "robustbench is installed but does not import with this torch (its torchvision needs the matching build; see README, RobustBench models)"; exit 1; }

# mypy cannot follow setuptools' editable finder (search_spaces/, trainables/ and analysis/ install as
# tune_robust.*), so it reads the installed layout from a tree of links rebuilt here each time.
MYPY_TREE := .mypy_tree/tune_robust

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)
	ln -s $(CURDIR)/tune_robust/* $(MYPY_TREE)/
	for d in search_spaces trainables analysis; do ln -s $(CURDIR)/$$d $(MYPY_TREE)/$$d; done
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m "slow and not grid"

# The README's main command, all 125 configs, checked (13-17 minutes on 2 cores).
test-grid: setup
	$(PY) -m pytest -q -m grid

bench: setup
	$(PY) bench/pgd_at_throughput.py
	$(PY) bench/sweep_overhead.py

clean:
	rm -rf $(VENV) .mypy_tree .mypy_cache .ruff_cache .pytest_cache
