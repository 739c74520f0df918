# Two commands on a fresh clone:
#   make run    set up, then start the chat in the browser on a real Qwen2.5-VL model from the hub
#   make test   set up, then run the test suite
# Other targets: make setup, make demo (offline: tiny random model, a gallery of geotagged photos), make bench,
# make lint.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= Qwen/Qwen2.5-VL-3B-Instruct
# CPU machines get the CPU build of torch before anything else can pull a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0
export GRADIO_ANALYTICS_ENABLED := False
# `make demo`: the real geotagged photos of ../shared/data when they are there, else the synthetic geotagged
# examples shipped in ui/examples; a gallery of them, so that Locate draws neighbours on the map.
DEMO_PHOTOS ?= $(if $(wildcard ../shared/data/photos/*.jpg),../shared/data/photos,ui/examples)
DEMO_DIR    ?= .cache/demo

.PHONY: run demo demo-assets setup setup-dev browser test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA found: installing the default (CUDA) torch"; $(BIN)/pip install --quiet torch; \
	else \
		echo "no CUDA: installing the CPU torch ($(TORCH_CPU))"; $(BIN)/pip install --quiet "$(TORCH_CPU)"; \
	fi

setup: $(BIN)/python
	$(BIN)/pip install --quiet -e .

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"

run: setup
	$(BIN)/gaea ui --model $(MODEL)

demo: setup demo-assets
	$(BIN)/gaea ui --model $(DEMO_DIR)/tiny/vlm --gallery $(DEMO_DIR)/gallery --examples $(DEMO_PHOTOS)

# The tiny offline models and the demo gallery, each built once.
demo-assets: $(DEMO_DIR)/gallery/manifest.json

$(DEMO_DIR)/tiny/vlm/config.json:
	$(BIN)/gaea tiny-model --out $(DEMO_DIR)/tiny

$(DEMO_DIR)/gallery/manifest.json: $(DEMO_DIR)/tiny/vlm/config.json
	$(BIN)/gaea gallery build --images $(DEMO_PHOTOS) --out $(DEMO_DIR)/gallery --encoder $(abspath $(DEMO_DIR))/tiny/encoder

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "install Debian's chromium (apt-get install chromium) for the browser tests"; fi; \
	fi

test: setup-dev browser
	$(BIN)/python -m pytest

bench: setup-dev
	for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: setup-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .cache artifacts
