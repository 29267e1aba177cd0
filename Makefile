# Entry points. `make demo` shows the whole flow on a local cluster; `make test`
# runs every test tier, building the toolchain and starting a cluster as needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rolling
# The folder that holds every toolchain binary, keyed by the pins in tools/.
TOOLBIN = $(shell tools/toolchain.sh --bin)

# Pulumi, offline and local: no login (a file backend), no update check, no
# plugin downloads; the provider comes from the toolchain (see `toolchain`).
export PATH := $(TOOLBIN):$(CURDIR)/$(VENV)/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
ifneq ($(ROLLING_SYSTEM_PULUMI),1)
export PULUMI_HOME ?= $(CACHE)/pulumi-home
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
# Plugins come from the plugin cache (the provider) and from beside the CLI
# (the language host), never from PATH.
export PULUMI_IGNORE_AMBIENT_PLUGINS := true
endif
# (ROLLING_SYSTEM_PULUMI=1: the pulumi on PATH with its own home, plugins and downloads.)
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
# kubectl's discovery cache: in our cache folder, not ~/.kube.
export KUBECACHEDIR ?= $(CACHE)/kubectl
# Python's compiled modules (pytest's rewritten test modules among them) in our cache folder, not the
# checkout. A shell that turns bytecode off (PYTHONDONTWRITEBYTECODE) would have every run compile every
# module again: about 3 s of each unit-test worker's start, and of each program the engine runs.
export PYTHONPYCACHEPREFIX ?= $(CACHE)/pycache
unexport PYTHONDONTWRITEBYTECODE
LOCAL_ENV = PULUMI_CONFIG_PASSPHRASE=rolling-local KUBECONFIG=$$(cluster/cluster.sh kubeconfig)
# The local cluster's node: real (kubelet, containerd, a registry: cluster/node.sh) or kwok (fake nodes).
export ROLLING_NODE ?= real

.PHONY: help venv toolchain cluster-up cluster-down cluster-status demo env aws-emulator preflight \
        test test-unit test-watchdog test-manifests test-e2e lint lint-workflows fmt scan checkov \
        bench bench-speed bench-traffic bench-verdict bench-kill bench-caught bench-weighted fresh-check clean

help:
	@echo "make preflight       what this machine lacks for make demo and make test, one line each with what to do"
	@echo "make demo            build the app image 1.0.0 and 1.1.0, deploy 1.0.0 to a local cluster, roll it to 1.1.0"
	@echo "make test            every test tier: lint, unit, end-to-end (builds what is missing)"
	@echo "make test-unit       the fast loop: settings, helpers, components under mocks"
	@echo "make test-watchdog   the cluster's watchdog (watchdog/, Go) against a fake API server"
	@echo "make scan            render both targets' manifests and scan them with checkov (a peer's rule set)"
	@echo "make lint            ruff check, ruff format --check, mypy, shellcheck"
	@echo "make lint-workflows  actionlint on .github/workflows"
	@echo "make bench           rollout cost against kubectl (fake nodes), and traffic through rollouts three ways (real node): bench/results/"
	@echo "make bench-caught    the verdict on the real node: each kind of bad release 5 times, healthy releases in shared bursts"
	@echo "make bench-weighted  a weighted canary's bad release through the load balancer stand-in, 5 times a row"
	@echo "make toolchain       build Pulumi, the Kubernetes provider and control plane from pinned Go modules"
	@echo "make cluster-up | cluster-down | cluster-status"
	@echo "make fresh-check     a clean clone, an empty cache, make demo and make test; cold build times (long)"
	@echo "eval \"\$$(make -s env)\"  put pulumi, kubectl and the local settings in this shell"

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON_BOOT) -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "venv: $(PYTHON_BOOT) must be Python 3.11 or newer with the venv module (Debian: apt-get install python3-venv);" \
	       "set PYTHON_BOOT=/path/to/python3.11 to choose another" >&2; exit 1; }
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed

toolchain:
	@tools/toolchain.sh >/dev/null
	@tools/register-plugins.sh

cluster-up: toolchain
	@cluster/cluster.sh up

cluster-down:
	@cluster/cluster.sh down
	@scripts/aws-emulator-down.sh "$(CACHE)/aws-emulator"

cluster-status:
	@cluster/cluster.sh status

# What the machine lacks, one line each with what to do, before anything is built.
preflight:
	@$(PYTHON_BOOT) cluster/preflight.py

demo: preflight venv toolchain cluster-up
	@$(LOCAL_ENV) scripts/demo.sh

env: toolchain
	@echo "export PATH=\"$(TOOLBIN):$(CURDIR)/$(VENV)/bin:\$$PATH\""
	@echo "export PULUMI_BACKEND_URL=\"$(PULUMI_BACKEND_URL)\" PULUMI_SKIP_UPDATE_CHECK=true"
ifneq ($(ROLLING_SYSTEM_PULUMI),1)
	@echo "export PULUMI_HOME=\"$(PULUMI_HOME)\" PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_IGNORE_AMBIENT_PLUGINS=true"
endif
	@echo "export PULUMI_CONFIG_PASSPHRASE=rolling-local  # the local stack's passphrase only"
	@echo "export KUBECONFIG=\"$$(cluster/cluster.sh kubeconfig)\" KUBECACHEDIR=\"$(KUBECACHEDIR)\""

test: lint lint-workflows test-unit test-watchdog test-manifests test-e2e

# The cluster's watchdog (watchdog/: Go, the standard library alone) against a fake API server.
test-watchdog:
	cd watchdog && GOTOOLCHAIN=local go vet ./... && GOTOOLCHAIN=local go test ./...

# Three workers on two cores: what is left of waiting (the prober's and the load client's tests on real
# sockets) overlaps the program's tests under Pulumi's mocks; each worker takes the next test when free.
test-unit: venv
	$(PY) -m pytest tests/unit -n 3 --dist worksteal

# Every shell script the project runs, CI's included.
SHELL_SCRIPTS = $(shell find . -name '*.sh' -not -path './.venv/*' -not -path './.git/*') .ci/run

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	@test -z "$$(gofmt -l watchdog tools/pause)" || { gofmt -l watchdog tools/pause; echo "lint: gofmt -w the files above" >&2; exit 1; }

# actionlint alone: the pull-request workflow runs this without the rest of the toolchain.
lint-workflows:
	$$(tools/toolchain.sh --piece actionlint)/actionlint -no-color

fmt: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# checkov in a virtualenv of its own (its dependencies are not the program's), keyed by its pins.
CHECKOV_VENV := $(CACHE)/checkov-$(shell sha256sum tools/checkov/requirements.txt | cut -c1-12)
export ROLLING_CHECKOV := $(CHECKOV_VENV)/bin/checkov

# The folder is named by the pins' hash, so a stamp there is current by its name; the file is an
# order-only prerequisite: a clone's fresh mtime must not rebuild what the cache holds.
$(CHECKOV_VENV)/.installed: | tools/checkov/requirements.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON_BOOT) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/checkov/requirements.txt
	touch $@

checkov: $(CHECKOV_VENV)/.installed

# The AWS emulator (moto's server, IAM enforced) and the AWS CLI for the aws tests (tests/e2e/test_aws_*.py):
# a virtualenv of their own, keyed by their pins.
AWS_VENV := $(CACHE)/aws-emulator-$(shell sha256sum tools/aws-emulator/requirements.txt | cut -c1-12)
export ROLLING_AWS_VENV := $(AWS_VENV)

$(AWS_VENV)/.installed: | tools/aws-emulator/requirements.txt
	rm -rf $(AWS_VENV)
	$(PYTHON_BOOT) -m venv $(AWS_VENV)
	$(AWS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/aws-emulator/requirements.txt
	touch $@

aws-emulator: $(AWS_VENV)/.installed

# The manifests the program renders (the real engine and provider, no cluster), held to checkov's rules.
test-manifests: venv toolchain checkov
	$(PY) -m pytest tests/manifests

# Files, not a folder: checkov skips folders under a hidden one, such as ~/.cache.
SCAN_DIR := $(CACHE)/scan
scan: venv toolchain checkov
	@for target in local eks; do \
	  rm -rf $(SCAN_DIR)/$$target; \
	  $(PY) -m rigs.render --target $$target $(SCAN_DIR)/$$target >/dev/null || exit 1; \
	  echo "== $$target: $(SCAN_DIR)/$$target"; \
	  $(ROLLING_CHECKOV) --framework kubernetes --compact --quiet --skip-download \
	    -f $$(find $(SCAN_DIR)/$$target -name '*.yaml') || exit 1; \
	done

# The end-to-end tier gets a cluster of its own, started and stopped here; the tests that
# need more clusters name them after it ($(E2E_CLUSTER)-life, ...). E2E_CLUSTER=name to run
# beside another checkout's tier.
E2E_CLUSTER ?= rolling-e2e
# The whole tier takes about 24 minutes warm on two cores (docs/development.md); a run that takes this long
# has slowed by a wide margin, which fails it (a run of a few tests, E2E_ARGS, is not held to it).
E2E_BUDGET_S ?= 2700
# Tests run side by side, three at a time on two cores: most of their time is spent waiting on pods and
# the engine (two at a time took 1,110 s, three 964 s); the longest start first (tests/e2e/conftest.py).
E2E_WORKERS ?= 3
test-e2e: venv toolchain aws-emulator
	@ROLLING_CLUSTER=$(E2E_CLUSTER) cluster/cluster.sh up
	@ROLLING_CLUSTER=$(E2E_CLUSTER) $(PY) -m tests.e2e.images || { ROLLING_CLUSTER=$(E2E_CLUSTER) cluster/cluster.sh down; exit 1; }
	@status=0; start=$$(date +%s); \
	ROLLING_CLUSTER=$(E2E_CLUSTER) KUBECONFIG=$$(ROLLING_CLUSTER=$(E2E_CLUSTER) cluster/cluster.sh kubeconfig) \
	  $(PY) -m pytest tests/e2e -n $(E2E_WORKERS) --dist worksteal --durations=25 $(E2E_ARGS) || status=$$?; \
	took=$$(( $$(date +%s) - start )); \
	ROLLING_CLUSTER=$(E2E_CLUSTER) cluster/cluster.sh down; \
	echo "test-e2e: the tests took $$took s (budget $(E2E_BUDGET_S) s)"; \
	if $(if $(strip $(E2E_ARGS)),false,true) && [ $$took -gt $(E2E_BUDGET_S) ] && [ $$status = 0 ]; then \
	  echo "test-e2e: over its budget by a wide margin: see the slowest tests above (docs/development.md)" >&2; status=1; \
	fi; \
	exit $$status

# Benchmarks on a cluster of their own whose pods get ready 5 s after creation: kwok's fake
# nodes, which hold the hundreds of pods the larger runs need (a real node here has 2 cores); eight of
# them, 64 CPUs, for 250 pods at Fargate's 250m: the program's Deployment and kubectl's copy of it, each
# at 100 replicas and their 25 % surge.
BENCH_ENV = ROLLING_CLUSTER=rolling-bench ROLLING_NODE=kwok ROLLING_NODES=8 ROLLING_POD_CREATE_MS=500 ROLLING_POD_READY_MS=5000 \
            ROLLING_POD_JITTER_MS=0 ROLLING_POD_DELETE_MS=500
bench: bench-speed bench-traffic bench-verdict bench-kill

# The analysis's verdict over simulated releases (no cluster): bench/results/verdict.*, docs/benchmarks.md.
bench-verdict: venv
	$(PY) -m bench.verdict >/dev/null

bench-speed: venv toolchain
	@$(BENCH_ENV) cluster/cluster.sh down >/dev/null 2>&1 || true
	@start=$$(date +%s.%N); $(BENCH_ENV) cluster/cluster.sh up; end=$$(date +%s.%N); \
	status=0; \
	$(BENCH_ENV) KUBECONFIG=$$($(BENCH_ENV) cluster/cluster.sh kubeconfig) ROLLING_TOOLCHAIN_CACHE=$(CACHE)/toolchain \
	  $(PY) -m bench.run --cluster-start-s $$($(PY) -c "print(round($$end - $$start, 1))") || status=$$?; \
	$(BENCH_ENV) cluster/cluster.sh down; \
	exit $$status

# Traffic through a rollout, three ways, on a real node of its own: bench/results/traffic.md.
TRAFFIC_ENV = ROLLING_CLUSTER=rolling-traffic ROLLING_NODE=real
bench-traffic: venv toolchain
	@$(TRAFFIC_ENV) cluster/cluster.sh down >/dev/null 2>&1 || true
	@$(TRAFFIC_ENV) cluster/cluster.sh up  # once first: a cold start installs packages and pulls nothing else
	@$(TRAFFIC_ENV) cluster/cluster.sh down >/dev/null
	@start=$$(date +%s.%N); $(TRAFFIC_ENV) cluster/cluster.sh up; end=$$(date +%s.%N); \
	status=0; \
	$(TRAFFIC_ENV) KUBECONFIG=$$($(TRAFFIC_ENV) cluster/cluster.sh kubeconfig) \
	  $(PY) -m bench.traffic --cluster-start-s $$($(PY) -c "print(round($$end - $$start, 1))") || status=$$?; \
	$(TRAFFIC_ENV) cluster/cluster.sh down; \
	exit $$status

# The verdict on the real node alone (part of bench-traffic): each kind of bad release 5 times, and 20 healthy
# releases answering shared bursts: bench/results/analysis-caught.md.
bench-caught: venv toolchain
	@$(TRAFFIC_ENV) cluster/cluster.sh up
	@status=0; \
	$(TRAFFIC_ENV) KUBECONFIG=$$($(TRAFFIC_ENV) cluster/cluster.sh kubeconfig) \
	  $(PY) -m bench.traffic --only analysis-caught || status=$$?; \
	$(TRAFFIC_ENV) cluster/cluster.sh down; \
	exit $$status

# The weighted canary's bad releases through the load balancer stand-in (bench/weighted.py), alone.
bench-weighted: venv toolchain aws-emulator
	@$(TRAFFIC_ENV) cluster/cluster.sh up
	@status=0; \
	$(TRAFFIC_ENV) KUBECONFIG=$$($(TRAFFIC_ENV) cluster/cluster.sh kubeconfig) \
	  $(PY) -m bench.traffic --only analysis-weighted || status=$$?; \
	$(TRAFFIC_ENV) cluster/cluster.sh down; \
	exit $$status

# The kill matrix: `rollout` killed at each phase of a release, users' traffic beside it, on a real node of its
# own: bench/results/kill.md, docs/rollouts.md. KILL_ARGS="--runs 1 --phase bake" runs a part.
KILL_ENV = ROLLING_CLUSTER=rolling-kill ROLLING_NODE=real
bench-kill: venv toolchain
	@$(KILL_ENV) cluster/cluster.sh up
	@status=0; \
	$(KILL_ENV) KUBECONFIG=$$($(KILL_ENV) cluster/cluster.sh kubeconfig) $(PY) -m bench.kill $(KILL_ARGS) || status=$$?; \
	$(KILL_ENV) cluster/cluster.sh down; \
	exit $$status

# The README's two commands as a new machine runs them (KEEP=1 keeps the folder).
fresh-check:
	scripts/fresh-check.sh $(if $(KEEP),--keep)

clean:
	rm -rf $(VENV) .pulumi-state .mypy_cache .ruff_cache .pytest_cache tools/kubernetes-provider/*-embed.json
