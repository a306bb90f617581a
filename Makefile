# One entry point for people, CI and hooks alike.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-plain-path test-lowest test-sdist lint docs bench bench-guard chaos chaos-short chaos-short-plain-path clean

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
		tests/test_forged_messages.py tests/test_operate.py tests/test_logging.py tests/test_tracing.py tests/test_async_tasks.py \
		tests/integration/test_worker_processes.py tests/integration/test_features_sigkill.py

# Every direct dependency (and extra) at the lowest version pyproject.toml allows, resolved by uv
# (--resolution lowest-direct; their own dependencies stay at the newest), in a fresh .venv-lowest.
# uv comes with the dev group. The tests below need only pytest, pyyaml and httpx of the dev
# tools, at the dev group's floors.
LOWEST_TESTS := tests/unit tests/test_contract.py tests/test_reference_scenarios.py \
	tests/test_dashboard_api.py tests/test_tracing.py tests/test_metrics.py
test-lowest: $(BIN)/encore   ## the unit and contract suites (both backend pairs) on the lowest allowed versions
	rm -rf .venv-lowest
	$(BIN)/uv venv -q --python $(BIN)/python .venv-lowest
	$(BIN)/uv pip install -q --python .venv-lowest/bin/python --resolution lowest-direct \
		-e '.[dashboard,otel]' 'pytest>=8' 'pyyaml>=6' 'httpx>=0.27'
	$(BIN)/uv pip list --python .venv-lowest/bin/python
	.venv-lowest/bin/python -m pytest -p no:cacheprovider $(LOWEST_TESTS)

# The sdist as a user gets it: built, pip-installed (with its extras) into a fresh venv in a
# temporary directory, unpacked there, and its tests run from the unpacked tree with
# --import-mode=append (and not `python -m`, which puts the tree first on sys.path), so the
# tests import the installed `dramatiq_encore` (their own subprocesses, started in the tree
# with `python -m`, get the tree's copy of the same files).
SDIST_TESTS := tests/unit tests/test_contract.py tests/test_reference_scenarios.py
test-sdist: $(BIN)/encore   ## the unit and contract suites of the built sdist, installed in a fresh venv
	set -e; work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	$(BIN)/python -m build --sdist --outdir "$$work" . >/dev/null; \
	sdist=$$(ls "$$work"/*.tar.gz); echo "built $$sdist"; \
	$(BIN)/python -m venv "$$work/venv"; \
	"$$work/venv/bin/pip" install -q --upgrade pip; \
	"$$work/venv/bin/pip" install -q "$$sdist[dashboard,otel]" 'pytest>=8' 'pyyaml>=6' 'build>=1.2'; \
	tar xzf "$$sdist" -C "$$work"; cd "$$work"/dramatiq_encore-*/; \
	../venv/bin/python -P -c 'import dramatiq_encore; print("testing", dramatiq_encore.__file__)'; \
	../venv/bin/pytest -p no:cacheprovider --import-mode=append $(SDIST_TESTS)

lint: $(BIN)/encore   ## ruff, mypy --strict on the package, and the typed API's expectations (tests/typing)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --strict --warn-unused-ignores tests/typing

docs: $(BIN)/encore   ## the documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(BIN)/encore   ## RabbitMQ + Redis on localhost: every workload against the raw-dramatiq floor
	$(BIN)/python benchmarks/step_latency.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/sleepers.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/index_cost.py
	$(BIN)/python benchmarks/scaling.py

bench-guard: $(BIN)/encore   ## under a minute: fails when W1 > 3 x the floor or W2 < 0.25 of it
	$(BIN)/python benchmarks/guard.py

chaos: $(BIN)/encore   ## long chaos run: 300 workflows, 30+ faults
	$(BIN)/python -m chaos.run --workflows 300 --seed 1

chaos-short: $(BIN)/encore   ## the short chaos run CI does
	$(BIN)/python -m chaos.run --short

chaos-short-plain-path: $(BIN)/encore   ## the same with every fast path off
	ENCORE_FAST_PATH=0 ENCORE_TIMER_POLL=0 $(BIN)/python -m chaos.run --short

clean:
	rm -rf $(VENV) .venv-lowest site .pytest_cache .mypy_cache .ruff_cache
