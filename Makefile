# The README's commands. Everything runs from the project's own virtualenv (.venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -n 2 --dist loadfile
BENCH_ARGS ?=
SPARK_PYTEST_ARGS ?=

.PHONY: demo test dev install generate bench bench-postgres clean
.PHONY: bench-10m test-spark test-quick dashboard

$(BIN)/qa-pipeline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@

install: $(BIN)/qa-pipeline

## make demo: generate the sample if data/raw is empty, run every month, print where things are
demo: install
	$(BIN)/qa-pipeline demo

## make test: the whole suite, with a throwaway PostgreSQL started from the machine's binaries;
## the fault suite (qa_pipeline_tests/faults) included, its long part (SIGKILL trials) too. `-p` loads
## the fault suite's summary line on pytest-xdist's controller, which never loads a sub-folder conftest
FAULTS_SUMMARY := -p qa_pipeline_tests.faults.summary
test: install
	.ci/with-postgres $(BIN)/python -m pytest $(FAULTS_SUMMARY) $(PYTEST_ARGS)

## make test-quick: the same without the fault suite's long part (marker faults_long)
test-quick: install
	.ci/with-postgres $(BIN)/python -m pytest $(FAULTS_SUMMARY) -m "not faults_long" $(PYTEST_ARGS)

## make dev: the Dagster UI on http://127.0.0.1:3000 (embedded SQLite instance in .dagster_home)
dev: install
	mkdir -p .dagster_home
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## make dashboard: the Training & Quality dashboard on http://127.0.0.1:8501 (PORT=… to change), reading
## the snapshot the pipeline publishes after each month (run `make demo` first)
PORT ?= 8501
dashboard: install
	$(BIN)/qa-pipeline dashboard --port $(PORT)

## make check-defs: `dg check defs`, the definitions load and validate as from a fresh clone (CI runs it)
.PHONY: check-defs
check-defs: install
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

generate: install
	$(BIN)/qa-pipeline generate

## make bench: 1M audits end to end against the DuckDB floor (results in benchmarks/results.md);
## the data set is generated once into benchmarks/data/1000000 and reused
bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

## make bench-10m: 10M audits in one month (generated once, as ten 1M slices, into benchmarks/data/10000000)
bench-10m: install
	$(BIN)/python benchmarks/run.py --audits 10000000 $(BENCH_ARGS)

## make test-spark: the Spark tests alone, on a local standalone cluster they start (needs Java 17+)
test-spark: install
	$(BIN)/python -m pytest -m spark $(SPARK_PYTEST_ARGS)

## make bench-postgres: a 1M-row audits_clean partition into a throwaway PostgreSQL
bench-postgres: install
	.ci/with-postgres $(BIN)/python benchmarks/postgres_load.py

clean:
	rm -rf data/warehouse data/reports .dagster_home benchmarks/work
