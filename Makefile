# One entry point for people, CI and hooks alike.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-plain-path lint bench bench-guard chaos chaos-short chaos-short-plain-path clean

$(BIN)/encore: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip   # >= 25.1 for --group (PEP 735 dependency groups)
	$(BIN)/pip install -q -e '.[dashboard,otel]' --group dev
	touch $@

demo: $(BIN)/encore   ## embedded: no servers needed
	$(BIN)/encore demo

test: $(BIN)/encore   ## unit + contract tests on both backend pairs (RabbitMQ and Redis on localhost)
	$(BIN)/pytest

test-plain-path: $(BIN)/encore   ## the contract and SIGKILL suites again, with every fast path off and timers as delayed messages
	ENCORE_FAST_PATH=0 ENCORE_TIMER_POLL=0 $(BIN)/pytest tests/test_contract.py tests/test_timers.py tests/test_reference_scenarios.py tests/test_recovery.py \
		tests/test_forged_messages.py tests/test_operate.py tests/test_logging.py tests/test_tracing.py \
		tests/integration/test_worker_processes.py tests/integration/test_features_sigkill.py

lint: $(BIN)/encore
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/encore   ## RabbitMQ + Redis on localhost: every workload against the raw-dramatiq floor
	$(BIN)/python benchmarks/step_latency.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/sleepers.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/index_cost.py

bench-guard: $(BIN)/encore   ## under a minute: fails when W1 > 3 x the floor or W2 < 0.25 of it
	$(BIN)/python benchmarks/guard.py

chaos: $(BIN)/encore   ## long chaos run: 300 workflows, 30+ faults
	$(BIN)/python -m chaos.run --workflows 300 --seed 1

chaos-short: $(BIN)/encore   ## the short chaos run CI does
	$(BIN)/python -m chaos.run --short

chaos-short-plain-path: $(BIN)/encore   ## the same with every fast path off
	ENCORE_FAST_PATH=0 ENCORE_TIMER_POLL=0 $(BIN)/python -m chaos.run --short

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
