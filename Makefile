# edgesight: `make demo` and `make test` on a fresh Debian 12 / Raspberry Pi OS machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Variables: override any on the command line (make train DATA=photos); `make help` prints each with the
# line of its help.NAME.
PYTHON ?= python3
help.PYTHON := the Python that creates the virtualenv (3.11 or newer)
VENV ?= .venv
help.VENV := the virtualenv make creates and runs every command from
EXTRAS ?= edge,train,test,deploy
help.EXTRAS := the setup.cfg extras installed into VENV
DATA ?= data/digits
help.DATA := the labelled images, one folder per class (default: the digits sample make writes)
RUN ?= runs/digits
help.RUN := the run directory make train writes (model, split, history, metrics)
BUNDLE ?= bundles/digits
help.BUNDLE := the int8 bundle make quantize writes, and make deploy/sdcard ship
DEMO ?= demo
help.DEMO := where make demo writes its video, config and results
# Training flags; the digits are small greyscale images.
FIT_FLAGS ?= $(if $(filter data/digits,$(DATA)),--size 32 --color grayscale --flip none,)
help.FIT_FLAGS := flags of edgesight-train fit (--size 96 --model mobilenetv2 ...; see its --help)
# The quantization gate: refuse a bundle that loses more than this many accuracy points; --io int8|uint8.
QUANT_FLAGS ?= --max-drop 1.0 --io int8
help.QUANT_FLAGS := flags of edgesight-train quantize (--max-drop points, --io int8|uint8)
# make retrain: transfer learning from the ImageNet backbone (Keras downloads it once into ~/.keras/models),
# and how many accuracy points the new bundle may lose against the live one and still be deployed.
RETRAIN_FLAGS ?= --model mobilenetv2 --weights imagenet --size 160 --width 1.0
help.RETRAIN_FLAGS := flags of edgesight-train fit for make retrain (a pretrained backbone; --fine-tune 3 ...)
MARGIN ?= 2
help.MARGIN := accuracy points a retrained bundle may lose against the live one and still be deployed
PYTEST_FLAGS ?=
help.PYTEST_FLAGS := extra pytest arguments for make test (-k mqtt, -x, -m "not slow")
BENCH_FLAGS ?=
help.BENCH_FLAGS := flags of the benchmark (--quick: a sliver of it)
PREFIX ?= /opt/edgesight
help.PREFIX := on the Pi: where make install puts the virtualenv
CORAL ?= auto
help.CORAL := make install: allow the Coral Edge TPU's devices (auto: if one is plugged in; yes; no)
SOCKET_BIND ?= auto
help.SOCKET_BIND := make install: listen only on the HTTP port (auto: where systemd enforces it; yes; no)
WHEELS ?=
help.WHEELS := a folder of wheels: make wheels fills it, make install installs from it offline
PLATFORM ?= aarch64
help.PLATFORM := the Pi's CPU for make wheels: aarch64 (64-bit OS) or armv7l (32-bit)
HOST ?=
help.HOST := the Pi make deploy pushes BUNDLE to, make pull-data and make retrain fetch from (pi@raspberrypi.local)
REMOTE_EDGESIGHT ?= $(PREFIX)/venv/bin/edgesight
help.REMOTE_EDGESIGHT := make deploy/pull-data: edgesight on the Pi (HOST=local: on this machine)
REMOTE_CONFIG ?= /etc/edgesight/edgesight.toml
help.REMOTE_CONFIG := make deploy/pull-data: the daemon's config on the Pi (its [http] address and token)
PULL_FLAGS ?=
help.PULL_FLAGS := flags of edgesight pull-data (--token-file FILE for an http:// HOST; see its --help)
BOOT ?=
help.BOOT := the boot partition of a freshly flashed card, for make sdcard (/media/$$USER/bootfs)
CONFIG ?=
help.CONFIG := an edgesight.toml make sdcard installs with the bundle (default: the commented default)
# Debian packages the tests drive for real: a MQTT broker, a headless browser, and cloud-init to
# validate the first-boot user-data.
TEST_DEBS ?= mosquitto chromium cloud-init
help.TEST_DEBS := Debian packages make test installs (the broker, the browser, cloud-init)
# The system test's host tools (one list, which tests/vm/build-image.sh reads too).
VM_DEBS ?= $(shell grep -o '^[^\#]*' tests/vm/host-packages.txt)
help.VM_DEBS := Debian packages make system-test installs (tests/vm/host-packages.txt: debootstrap, QEMU, mtools)
HELP_VARS := DATA RUN BUNDLE FIT_FLAGS QUANT_FLAGS RETRAIN_FLAGS MARGIN DEMO BENCH_FLAGS PYTEST_FLAGS HOST REMOTE_EDGESIGHT REMOTE_CONFIG \
	PULL_FLAGS BOOT CONFIG WHEELS PLATFORM \
	PREFIX CORAL SOCKET_BIND PYTHON VENV EXTRAS STAMPS TEST_DEBS VM_DEBS

BIN := $(VENV)/bin
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv demo train quantize baseline evaluate test test-debs system-test lint format clean distclean \
	install uninstall deploy sdcard wheels pull-data retrain

quote = '$(subst ','\'',$(1))'

help: ## list the targets and the variables
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'
	@echo "variables (make TARGET NAME=value) [their values now]:"
	@$(foreach v,$(HELP_VARS),printf '  %-16s %s [%s]\n' $(v) $(call quote,$(help.$(v))) $(call quote,$($(v)));)

venv: $(STAMP) ## create the development virtualenv (re-installed only when setup.cfg changes)

$(STAMP): setup.cfg pyproject.toml
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	  echo "installing python3-venv (Debian's Python ships without venv)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; fi
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $@

# The digits sample dataset is written by make; any other DATA is the user's own folder.
DATA_DEP := $(if $(filter data/digits,$(DATA)),$(DATA)/.written,)

data/digits/.written: | $(STAMP)
	$(BIN)/edgesight-train digits data/digits
	touch $@

# A model is retrained when its flags or its images change, not only when it is missing: each step has a
# stamp named by a hash of its inputs (paths and flags, and for a user's DATA the names, sizes and times
# of its files), so changed inputs are a stamp that does not exist yet. (The digits sample is written by
# make: its .written file stands for its images.) The virtualenv is order-only: a new setup.cfg reinstalls
# it and retrains nothing.
STAMPS ?= build/stamps
help.STAMPS := where make records what each run and bundle was made from (flags, images)
hash = $(shell { echo $(call quote,$(1)); $(2) } | sha256sum | cut -c1-16)
DATA_FILES := $(if $(DATA_DEP),,find -L $(call quote,$(DATA)) -type f -printf '%P %s %T@\n' 2>/dev/null | LC_ALL=C sort;)
FIT_KEY := $(STAMPS)/fit-$(call hash,$(abspath $(RUN)))
FIT_STAMP := $(FIT_KEY)-$(call hash,$(abspath $(DATA)) $(FIT_FLAGS),$(DATA_FILES))
QUANT_KEY := $(STAMPS)/quantize-$(call hash,$(abspath $(BUNDLE)))
QUANT_STAMP := $(QUANT_KEY)-$(call hash,$(abspath $(RUN)) $(QUANT_FLAGS))

$(FIT_STAMP):
	@mkdir -p $(STAMPS) && rm -f $(FIT_KEY)-* && touch $@

$(QUANT_STAMP):
	@mkdir -p $(STAMPS) && rm -f $(QUANT_KEY)-* && touch $@

$(RUN)/model.keras: $(DATA_DEP) $(FIT_STAMP) | $(STAMP)
	$(BIN)/edgesight-train fit $(DATA) --out $(RUN) $(FIT_FLAGS)

$(BUNDLE)/manifest.json: $(RUN)/model.keras $(QUANT_STAMP) | $(STAMP)
	$(BIN)/edgesight-train quantize $(RUN) --out $(BUNDLE) $(QUANT_FLAGS)

train: $(RUN)/model.keras ## train DATA into RUN (the digits sample dataset by default)

quantize: $(BUNDLE)/manifest.json ## convert RUN to the int8 bundle BUNDLE; fails if int8 loses > --max-drop points

baseline: $(RUN)/model.keras ## the HOG + logistic-regression baseline on RUN's split, for evaluate
	$(BIN)/edgesight-train baseline $(DATA) --run $(RUN)

evaluate: $(BUNDLE)/manifest.json ## report (float, int8, baseline if trained) in RUN/report: md, html, json
	$(BIN)/edgesight-train evaluate $(RUN) --bundle $(BUNDLE)

demo: $(BUNDLE)/manifest.json ## train and quantize the digits, run the daemon over a video of held-out digits
	$(BIN)/python -m train.demo video $(RUN) --bundle $(BUNDLE) --out $(DEMO)
	$(BIN)/edgesight run --config $(DEMO)/edgesight.toml | tee $(DEMO)/results.jsonl
	$(BIN)/python -m train.demo score $(DEMO)/results.jsonl --truth $(DEMO)/truth.txt --min-accuracy 0.95

.PHONY: bench
bench: $(STAMP) ## measure the edge pipeline against the bare interpreter and the usual loop: bench/results.md
	$(BIN)/python -m bench $(BENCH_FLAGS)

test-debs:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing"; $(SUDO) apt-get update -qq; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

test: $(STAMP) test-debs ## run the test suite (installs what it needs, Debian packages included)
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

system-test: $(STAMP) ## install, run, crash, hang, reload, deploy and uninstall in a booted arm64 VM (20 min on 2 free cores, image build included; longer when they are shared)
	$(MAKE) --no-print-directory test-debs TEST_DEBS="$(VM_DEBS)"
	$(BIN)/python -m pytest --vm tests/vm $(PYTEST_FLAGS)

lint: $(STAMP) ## ruff (lint and formatting) and mypy (types; what it checks: setup.cfg [mypy])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## ruff: fix what can be fixed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## remove what make built (data, runs, bundles, demo), keep the virtualenv and the VM image
	rm -rf data runs bundles $(DEMO) .pytest_cache .ruff_cache .mypy_cache *.egg-info
	find build -mindepth 1 -maxdepth 1 -not -name vm -exec rm -rf {} + 2>/dev/null || true
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove the virtualenv
	rm -rf $(VENV) build

# On the Pi ------------------------------------------------------------------------------------------
install: ## on the Pi: install the hardened systemd service (sudo make install; WHEELS=dir offline; CORAL=yes)
	$(SUDO) env PREFIX=$(PREFIX) WHEELS=$(WHEELS) CORAL=$(CORAL) SOCKET_BIND=$(SOCKET_BIND) bash deploy/install.sh

uninstall: ## on the Pi: remove the service, its user, config, bundles and virtualenv
	$(SUDO) env PREFIX=$(PREFIX) bash deploy/uninstall.sh

# From the dev machine -------------------------------------------------------------------------------
deploy: ## push BUNDLE to HOST=user@pi, switch, and roll back unless it comes up healthy
	@[ -n "$(HOST)" ] || { echo "usage: make deploy HOST=pi@raspberrypi.local BUNDLE=bundles/photos"; exit 64; }
	REMOTE_EDGESIGHT=$(call quote,$(REMOTE_EDGESIGHT)) REMOTE_CONFIG=$(call quote,$(REMOTE_CONFIG)) \
	  bash deploy/deploy.sh $(HOST) $(BUNDLE)

pull-data: | $(STAMP) ## merge the images labelled on HOST=user@pi (or http://pi:8080) into DATA=folder, by content hash
	@[ -n "$(HOST)" ] && [ "$(DATA)" != data/digits ] || \
	  { echo "usage: make pull-data HOST=pi@raspberrypi.local DATA=data/garage [PULL_FLAGS=--token-file=FILE]"; exit 64; }
	$(BIN)/edgesight pull-data --from $(HOST) --into $(DATA) --remote-edgesight $(REMOTE_EDGESIGHT) \
	  --remote-config $(REMOTE_CONFIG) $(PULL_FLAGS)

retrain: | $(STAMP) ## pull HOST's labels into DATA, fit RUN, quantize BUNDLE; deploy it only if not worse than the live one
	@[ -n "$(HOST)" ] && [ "$(DATA)" != data/digits ] || { echo "usage: make retrain HOST=pi@garage.local" \
	  "DATA=data/garage RUN=runs/garage-2 BUNDLE=bundles/garage-2 [MARGIN=2] [RETRAIN_FLAGS='...']"; exit 64; }
	$(MAKE) --no-print-directory pull-data HOST=$(HOST) DATA=$(DATA)
	$(BIN)/edgesight-train fit $(DATA) --out $(RUN) $(RETRAIN_FLAGS)
	$(BIN)/edgesight-train quantize $(RUN) --out $(BUNDLE) $(QUANT_FLAGS)
	REMOTE_EDGESIGHT=$(call quote,$(REMOTE_EDGESIGHT)) REMOTE_CONFIG=$(call quote,$(REMOTE_CONFIG)) \
	  MARGIN=$(MARGIN) TRAIN=$(BIN)/edgesight-train bash deploy/retrain.sh $(HOST) $(RUN) $(BUNDLE) $(DATA)

wheels: $(STAMP) ## download what `make install` needs on a Pi into WHEELS=dir, for Pis without internet
	@[ -n "$(WHEELS)" ] || { echo "usage: make wheels WHEELS=build/wheels [PLATFORM=aarch64|armv7l]"; exit 64; }
	PIP="$(BIN)/python -m pip" bash deploy/wheels.sh $(WHEELS) $(PLATFORM)

sdcard: $(STAMP) ## prepare a freshly flashed card's boot partition BOOT to install BUNDLE on first boot (WHEELS=dir: offline)
	@[ -n "$(BOOT)" ] || { echo "usage: make sdcard BOOT=/media/$$USER/bootfs BUNDLE=bundles/photos"; exit 64; }
	$(BIN)/python deploy/sdcard.py --boot $(BOOT) --bundle $(BUNDLE) $(if $(CONFIG),--config $(CONFIG),) \
	  $(if $(WHEELS),--wheels $(WHEELS),)
