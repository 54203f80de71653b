# Kintsugi: `make up` runs everything on one machine; `make test` runs the suite. See DESIGN.md "Running".
PYTEST_ARGS ?=
VENV := .venv/bin

.PHONY: install up test lint format bench bench-guard clean

# Idempotent and cheap when done: uv (installed with pip if missing) syncs .venv to uv.lock, dev group included.
install:
	@if command -v uv >/dev/null 2>&1; then UV=uv; \
	else python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv; UV="python3 -m uv"; fi; \
	$$UV sync --frozen --compile-bytecode
	@# Bytecode for our own modules too: with PYTHONDONTWRITEBYTECODE set, every process (and, when
	@# sandboxed, every workflow run) would otherwise compile them from source.
	@$(VENV)/python -m compileall -q api client domain workflows activities schemas store migrations ops bench tests \
		settings.py worker.py cli.py >/dev/null

up: install
	$(VENV)/kintsugi up

test: install
	$(VENV)/pytest -q $(PYTEST_ARGS)

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy .

format:
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

bench: install
	$(VENV)/python -m bench.run

# The guard's detectors offline (abuse detection, guardrail detectors): figures as JSON, under a minute.
bench-guard: install
	$(VENV)/python -m bench.guard

clean:
	rm -rf .data
