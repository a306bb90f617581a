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

bench: $(BIN)/encore   ## RabbitMQ + Redis on localhost
	$(BIN)/python benchmarks/step_latency.py

chaos: $(BIN)/encore   ## long chaos run: 300 workflows, 30+ faults
	$(BIN)/python -m chaos.run --workflows 300 --seed 1

chaos-short: $(BIN)/encore   ## the short chaos run CI does
	$(BIN)/python -m chaos.run --short

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
