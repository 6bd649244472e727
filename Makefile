# Two commands for a fresh machine: `make demo` and `make test` (see README).
PY ?= python3
PIP := $(PY) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install system-deps demo test bench lint

system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcairo2 >/dev/null; \
	fi

install: system-deps
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/step_overhead.py

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
