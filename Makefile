# The verbs of the project. Every target creates .venv first (pinned by constraints.txt).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

ASSIGNMENT ?=
STUDENT ?=
FORCE ?=
JOBS ?= 1
SCHEDULER ?=
ZIP ?=
TIMES ?=
PRUNE ?=
THRESHOLD ?=

.PHONY: help venv book notebooks test lint format release collect grade grades similarity bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt pip setuptools wheel
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt --no-build-isolation -e '.[book,grader,dev]'
	touch $@

venv: $(STAMP)  ## create .venv with the pinned dependencies and the project (editable)

notebooks: $(STAMP)  ## write each chapter as .ipynb into _build/notebooks (git-ignored)
	$(PY) tools/pair_notebooks.py

# jupyter-cache keys a chapter on its own code only: when the library changes, drop the cache so
# every chapter runs again against the new logreg_lessons.
LIBRARY_STAMP := _build/.library-stamp
$(LIBRARY_STAMP): $(wildcard logreg_lessons/*.py)
	@mkdir -p _build
	@if [ -d _build/.jupyter_cache ]; then \
	  echo "logreg_lessons changed: every chapter will be executed again"; \
	  rm -rf _build/.jupyter_cache; fi
	@touch $@

book: $(STAMP) notebooks $(LIBRARY_STAMP)  ## build the HTML book strictly into _build/html
	$(BIN)/jupyter-book build . -W --keep-going --builder html
	@echo "Open _build/html/index.html in a browser."

test: $(STAMP)  ## lint, then run the whole test suite (builds the book and grades fixtures)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

release: $(STAMP)  ## regenerate exercises/ (students' notebooks) from solutions/
	$(BIN)/logreg-release

grade: $(STAMP)  ## autograde submitted/ (ASSIGNMENT=id, STUDENT=id, JOBS=N, SCHEDULER=tcp://..., FORCE=1)
	$(BIN)/logreg-grade $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(STUDENT),--student $(STUDENT)) $(if $(FORCE),--force) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) --jobs $(JOBS)

grades: $(STAMP)  ## rebuild grades.csv, grades-canvas.csv, plots, summary from the gradebook (PRUNE=1)
	$(BIN)/logreg-grades $(if $(PRUNE),--prune)

collect: $(STAMP)  ## an LMS's submissions zip into submitted/ (ZIP=file ASSIGNMENT=id [TIMES=csv])
	@test -n "$(ZIP)" -a -n "$(ASSIGNMENT)" || { echo "make collect needs ZIP=<the LMS's submissions zip> ASSIGNMENT=<id>" >&2; exit 2; }
	$(BIN)/logreg-collect --assignment $(ASSIGNMENT) $(if $(TIMES),--times $(TIMES)) $(ZIP)

similarity: $(STAMP)  ## alike solution code of ASSIGNMENT=id into reports/<id>/ (THRESHOLD=0.6)
	@test -n "$(ASSIGNMENT)" || { echo "make similarity needs ASSIGNMENT=<id>" >&2; exit 2; }
	$(BIN)/logreg-similarity --assignment $(ASSIGNMENT) $(if $(THRESHOLD),--threshold $(THRESHOLD))

bench: $(STAMP)  ## measure costs against their floors into benchmarks/results.md
	$(PY) benchmarks/run.py

lock: ## re-resolve the dependencies and rewrite constraints.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q --no-build-isolation -e '.[book,grader,dev]'
	{ echo '# Exact versions of every package in .venv; regenerate with `make lock`.'; \
	  $(PY) -m pip freeze --all --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | sort -f; } > constraints.txt
	touch $(STAMP)

clean:  ## remove build outputs (keeps .venv)
	rm -rf _build
