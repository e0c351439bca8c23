# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install run test test-all openapi bench zoo clean chromium gpu-wheels gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and pinned: on machines without CUDA the pinned CPU wheel is on disk; letting another
# package pull an unpinned torch would download a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m launcher

test: $(STAMP) chromium
	$(PY) -m pytest -q -ra --timeout=900

test-all: $(STAMP) chromium
	$(PY) -m pytest -q -ra -m "" --timeout=3600

openapi: $(STAMP)
	$(PY) -m service.openapi_dump openapi/openapi.json

# The benchmarks' optional dependencies (the nnsight peers of benchmarks/scan.py): `.[bench]`, with the
# same pinned torch as the install (so pip can never swap it for another build).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PIP) install -q "torch==2.13.0" -e ".[test,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/scan.py

# The GPU check (benchmarks/gpu_check.py): `make gpu-wheels` here, with network, puts the runtime
# dependencies a CUDA PyTorch image lacks in gpu-wheels/ (git-ignored); `make gpu-check` on the GPU
# machine (its own python3 with torch, no internet) installs them into a temporary folder and runs
# every check in one go.
gpu-wheels: $(STAMP)
	$(PY) benchmarks/gpu_check.py wheels --dest gpu-wheels

gpu-check:
	PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py run --device cuda --wheels gpu-wheels

zoo: $(STAMP)
	$(PY) -m circuitdiff.zoo.train --out circuitdiff/zoo/models --seed 0

# The report's and the console's browser tests drive Debian's headless Chromium, the console's through
# Debian's chromium-driver (never a downloaded browser or driver build). Idempotent; without root it
# only warns, and those tests then fail saying what is missing.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		echo "warning: could not install chromium and chromium-driver (needs root); the browser tests will fail"

clean:
	rm -rf $(VENV) .pytest_cache
