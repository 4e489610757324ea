# trackerfs: set up, run the demo, run the tests.
#
#   make demo     apt packages (when missing), a virtualenv, then `trackerfs demo ./tracker`
#   make test     the same set-up, then the whole test suite
#   make check    ruff and mypy
#   make bench    the benchmark suite (docs/benchmarks.md)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MOUNTPOINT ?= ./tracker
PYTEST_ARGS ?=

# Debian packages: FUSE and the build of pyfuse3, then the tools the tests use as a person would.
APT_BUILD := fuse3 libfuse3-dev pkg-config gcc python3-venv python3-dev
APT_TEST := attr file unzip rsync curl less vim libreoffice-writer-nogui
# Only `make bench` needs these: the media host, the peer filesystem and the random-read load.
APT_BENCH := nginx-light rclone fio
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps venv demo test check bench clean

deps:
	@missing=""; for p in $(APT_BUILD) $(APT_TEST); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | deps
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "trackerfs needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: deps $(VENV)/.installed

demo: venv
	$(BIN)/trackerfs demo $(MOUNTPOINT)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: venv
	$(BIN)/ruff check trackerfs tests
	$(BIN)/ruff format --check trackerfs tests
	$(BIN)/mypy

bench: venv
	@missing=""; for p in $(APT_BENCH); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
