# The two commands of the README: `make run` (main job on the embedded default) and `make test`.
# Both install into .venv first, idempotently (re-run only when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STORE ?= $(CURDIR)/.vp_store
SWEEP ?= sweeps/smoke.yaml
# CPU build by default; a GPU cluster sets e.g. TORCH_SPEC="torch==2.13.0 --index-url <cuda wheel index>".
TORCH_SPEC ?= torch==2.13.0

.PHONY: install run study test test-closed-loop lint bench clean-store chromium plan nightly stop

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m videopolicy.models.fetch_bpe   # CLIP BPE vocabulary for the offline tokenizer (from the open_clip_torch wheel)
	touch $@

install: $(VENV)/.installed

# Main job: a local Ray head (started and stopped by PID; 127.0.0.1 only, token auth with the store's
# token <store>/ray/auth_token), `ray job submit` of the sweep driver.
# The MLflow server it starts (127.0.0.1) stays up for its UI; `make stop` ends it.
run: install
	$(PY) jobs/local_cluster.py --store $(STORE) submit -- python jobs/sweep_ablations.py --sweep $(SWEEP) --store $(STORE)

# The CPU study (issue 11, sweeps/cpu_paper.yaml): hours on 2 cores; rerun the same command after an
# interruption and it resumes. The table, report, episodes, stage timings and provenance land in results/.
study: install
	$(PY) jobs/local_cluster.py --store $(STORE) submit -- python jobs/sweep_ablations.py --sweep sweeps/cpu_paper.yaml \
	  --store $(STORE) --results $(CURDIR)/results/cpu_paper

plan: install
	$(PY) jobs/sweep_ablations.py --sweep $(SWEEP) --store $(STORE) --plan

nightly: install
	$(PY) jobs/nightly.py --sweep sweeps/nightly.yaml

stop:
	$(PY) -m videopolicy.tracking.server stop --store $(STORE)
	$(PY) jobs/local_cluster.py stop

# Tests need headless Chromium (the report test) and the LIBERO-10 virtualenv (its suite test).
# The linter runs first (seconds): rules in pyproject.toml [tool.ruff].
test: install chromium sim-libero lint
	$(PY) -m pytest tests

# Only the closed-loop learning tests (DP-ResNet and the video policy; ~25 min on 2 cores), also in `make test`.
test-closed-loop: install
	$(PY) -m pytest tests/test_closed_loop.py

lint: install
	$(VENV)/bin/ruff check .

chromium:  # Debian's headless Chromium for tests/test_report.py (~45 s once)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Benchmarks print ratios measured side by side in one run (results in bench/results/); ~30-60 min on 2 cores.
bench: install
	$(PY) bench/sweep_plan.py --store $(STORE)
	$(PY) bench/train_overhead.py
	$(PY) bench/data_pipeline.py
	$(PY) bench/rollouts.py
	$(PY) bench/frame_gate.py
	$(PY) bench/train_metrics_outage.py
	$(PY) bench/study_costs.py --steps 2

clean-store:
	rm -rf $(STORE)

# Benchmark simulators in their own virtualenvs (deploy/sim/README.md). LIBERO-10 installs from PyPI
# alone; RoboCasa and MimicGen need GitHub (+ Box / HF Hub for assets and datasets).
.PHONY: sim-libero sim-robocasa sim-mimicgen

sim-libero:
	deploy/sim/install_libero.sh $(LIBERO_VENV)

sim-robocasa:
	deploy/sim/install_robocasa.sh $(ROBOCASA_VENV)

sim-mimicgen:
	deploy/sim/install_mimicgen.sh $(MIMICGEN_VENV)
