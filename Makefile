# One command each: `make demo` runs the default study offline; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup clean-results lint report bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

## Submit the default study to the embedded local backend, collect, decode, print the summaries.
## The deployment session's arms wait for its probe job: submit, collect, submit again, collect.
demo: $(STAMP)
	$(BIN)/snakemake --cores 1 submit
	$(BIN)/snakemake --cores 1 collect
	$(BIN)/snakemake --cores 1 submit
	$(BIN)/snakemake --cores 1 collect
	$(BIN)/snakemake --cores 1 analyze

## Decode what is collected and build the self-contained HTML report (results/report.html).
report: $(STAMP)
	$(BIN)/snakemake --cores 1 analyze
	$(BIN)/snakemake analyze --report results/report.html

## Set up and run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup

## Benchmarks with recorded results (bench/RESULTS.md); takes a while. `bench/run.py --quick` smoke-tests them.
bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/snakemake --lint

## Remove outputs of the local demo (never do this to a study with real IBM jobs).
clean-results:
	rm -rf results/circuits results/isa results/submitted results/collected results/ledger \
	       results/local_jobs results/calibration results/ibm_experiments results/selection \
	       results/analysis logs .snakemake
