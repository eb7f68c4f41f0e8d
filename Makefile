# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up, then run the main job on the bundled data
#   make test   set up, then run the test suite
# Set-up is idempotent: a venv in .venv with the CPU build of torch, the package built from source.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.diffmd-installed
SOURCES := $(shell find csrc python -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.py' -o -name '*.toml') CMakeLists.txt pyproject.toml

.PHONY: setup demo test test-fast bench cuda-check asan clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first (the CPU wheel), then build tools, then the package without build isolation so it
# compiles against exactly this torch.
$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	$(BIN)/pip install -q --no-build-isolation ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/diffmd demo

# Run from tests/ against the installed package (not the source tree) so the install itself is tested.
test: setup
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest tests -q -p no:cacheprovider -m "not slow"

bench: setup
	$(BIN)/python benches/bench_egl.py

# Compiles and links the CUDA kernels against the CUDA 13.0 torch wheel (no GPU needed) and checks
# that every op has a CUDA kernel registered.
cuda-check:
	bash scripts/ci_cuda_build.sh

# The CPU extension under AddressSanitizer + UndefinedBehaviorSanitizer, running the op tests.
asan:
	bash scripts/asan_tests.sh

clean:
	rm -rf build $(VENV) python/diffmd_fast/*.so
