# One entry point for people, CI and hooks alike.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench chaos chaos-short clean

$(BIN)/encore: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/encore   ## embedded: no servers needed
	$(BIN)/encore demo

test: $(BIN)/encore   ## unit + contract tests on both backend pairs (RabbitMQ and Redis on localhost)
	$(BIN)/pytest

lint: $(BIN)/encore
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/encore
	$(BIN)/python benchmarks/step_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
