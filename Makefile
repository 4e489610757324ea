# trackerfs: set up, run the demo, run the tests.
#
#   make demo     apt packages (when missing), a virtualenv, then `trackerfs demo ./tracker`
#                 (TRACKER=asana|waldur|openproject|yandex picks another tracker's emulator,
#                 TRACKER=all mounts every one, each a folder)
#   make test     the same set-up plus the tools the tests drive, then the whole test suite
#   make check    ruff and mypy
#   make bench    the benchmark suite (docs/benchmarks.md); BENCH_ARGS=--quick for a smoke run
#   make soak     the fault soak and kill -9 rounds for every tracker, with figures
#                 (docs/reliability.md; about 25 minutes); SOAK_ARGS="--seconds 20 --rounds 5"

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MOUNTPOINT ?= ./tracker
# the emulator dialect of `make demo`: jira, asana, waldur, openproject, yandex, or all
TRACKER ?= jira
PYTEST_ARGS ?=
BENCH_ARGS ?=
SOAK_ARGS ?=

# Debian packages: FUSE and the build of pyfuse3; the tools the tests use as a person
# would; and, for `make bench` only, the media host, the peer filesystem and fio.
APT_BUILD := fuse3 libfuse3-dev pkg-config gcc python3-venv python3-dev
APT_TEST := attr file unzip rsync curl less vim sqlite3 systemd libglib2.0-bin libreoffice-writer-nogui
APT_BENCH := nginx-light rclone fio
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# $(call apt_install,PACKAGES): install the ones that are missing, with one apt-get run.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

.PHONY: deps test-deps venv demo test check bench soak clean

deps:
	$(call apt_install,$(APT_BUILD))

test-deps:
	$(call apt_install,$(APT_TEST))

$(VENV)/.installed: pyproject.toml | deps
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "trackerfs needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: deps $(VENV)/.installed

demo: venv
	$(BIN)/trackerfs demo $(if $(filter all,$(TRACKER)),--all,--tracker $(TRACKER)) $(MOUNTPOINT)

test: venv test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: venv
	$(BIN)/ruff check trackerfs tests
	$(BIN)/ruff format --check trackerfs tests
	$(BIN)/mypy
	@# The trimmed vendor specs in tests/specs/ match the full ones, where those are at hand.
	@if [ -d ../shared/specs ]; then $(BIN)/python -m tests.specs.trim --check; fi

bench: venv test-deps
	$(call apt_install,$(APT_BENCH))
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

soak: venv test-deps
	$(BIN)/python -m tests.reliability $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
