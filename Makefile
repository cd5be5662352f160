# The two commands a newcomer needs are `make run` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX_PORT ?= 8765
CHROMIUM := /usr/bin/chromium

.PHONY: setup lock run ui test lint bench report sandbox services clean

setup: $(STAMP)

# Reinstall only when the project's metadata or pins change; the package itself is installed editable,
# every dependency at the version constraints.txt pins.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Resolve pyproject.toml's ranges afresh in a scratch virtualenv and pin the result (then `make test`);
# the image's dagster-k8s too, so that its dependencies are pinned for the image's build.
DAGSTER_K8S_VERSION = $(shell sed -n 's/^ARG DAGSTER_K8S_VERSION=//p' pipelines/deploy/Dockerfile)
lock:
	rm -rf $(VENV).lock && $(PYTHON) -m venv $(VENV).lock
	$(VENV).lock/bin/python -m pip install --quiet --upgrade pip
	$(VENV).lock/bin/python -m pip install --quiet '.[dev]' 'dagster-k8s==$(DAGSTER_K8S_VERSION)'
	{ sed -n '/^#/p' constraints.txt; $(VENV).lock/bin/python -m pip freeze --exclude-editable \
	  | grep -v '^synctera-external-accounts'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf $(VENV).lock

run: setup
	$(BIN)/python -m pipelines.run

test: setup lint $(CHROMIUM) services
	$(BIN)/python -m pytest

# The scale-out tests use a real PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379 and RabbitMQ on
# 127.0.0.1:5672: start each when it is installed but stopped, or fail in one line naming it.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
	  || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql 2>/dev/null) main start 2>/dev/null \
	  || { echo "PostgreSQL is not running on 127.0.0.1:5432 (and could not be started): start it" >&2; exit 1; }
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 \
	  || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 \
	  || { echo "Redis is not running on 127.0.0.1:6379 (and could not be started): start it" >&2; exit 1; }
	@rabbitmqctl -q status >/dev/null 2>&1 \
	  || { rabbitmq-server -detached >/dev/null 2>&1 && rabbitmqctl -q await_startup >/dev/null 2>&1; } \
	  || { echo "RabbitMQ is not running on 127.0.0.1:5672 (and could not be started): start it" >&2; exit 1; }

# The browser tests drive Debian's chromium through Playwright (no browser download is possible here).
$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] || { echo "$(CHROMIUM) is missing: run 'apt-get install chromium' as root" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

lint: setup
	$(BIN)/ruff check pipelines assets tests bench
	$(BIN)/ruff format --check pipelines assets tests bench
	$(BIN)/mypy

# The Dagster UI on the same workspace, with the sandbox serving on $(SANDBOX_PORT): launch backfills
# from the browser. Runs and the lake are kept in .dagster/ and data/.
ui: setup
	@mkdir -p .dagster && cp -n pipelines/dagster.yaml .dagster/dagster.yaml
	@$(BIN)/python -m pipelines.sandbox --port $(SANDBOX_PORT) & sandbox=$$!; \
	trap 'kill $$sandbox 2>/dev/null' EXIT INT TERM; \
	SYNCTERA_BASE_URL=http://127.0.0.1:$(SANDBOX_PORT)/v0 SYNCTERA_API_KEY=sandbox-api-key \
	DAGSTER_HOME=$(CURDIR)/.dagster $(BIN)/dagster dev -w workspace.yaml

# Workload S (200 accounts x 90 days, a few minutes, with the bare and strict CPU floors); what each
# step from bytes to Parquet costs a row; the backfill as operators run it (the CLI and the daemon,
# as process trees, against one process: bench.paths, ~10-20 minutes); then the call yardsticks
# (issue 13, point 4) of real runs on three seeds: a cold 90-day backfill ÷ the planner told every
# account's true rate (≤ 1.05), the warm daily run ÷ the minimum (≤ 1.05), yesterday alone = one call
# per account plus one per flagged day. `make bench M=1` adds workload M (2,000 accounts x 365 days)
# in one process and three times through the CLI as a process tree (about an hour and a half).
# Tables: BENCHMARKS.md.
bench: setup
	$(BIN)/python -m bench.perf $(if $(M),--m)
	$(BIN)/python -m bench.row_costs
	$(BIN)/python -m bench.asset_steps --runs 3
	$(BIN)/python -m bench.paths --table --runs 3 --realistic --accounts 460 --days 90
	$(if $(M),for run in 1 2 3; do $(BIN)/python -m bench.paths --path cli --accounts 2000 --days 365 --json || exit 1; done)
	$(BIN)/python -m bench.call_ratio --days 90 --seeds 7 8 11

# One HTML page and its PNGs from the warehouse (after `make run`): data/report/report.html.
report: setup
	$(BIN)/python -m pipelines.report

sandbox: setup
	$(BIN)/python -m pipelines.sandbox --port $(SANDBOX_PORT)

clean:
	rm -rf $(VENV) build *.egg-info
