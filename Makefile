# The two commands of the README: `make pretrain` and `make test`. Both run in the project's own
# virtual environment, .venv, which the first command creates with `$(PYTHON) -m venv` (so a system
# Python that refuses `pip install`, PEP 668's externally-managed-environment, works too) and which
# later commands re-use: pip runs again only when requirements.txt (the suite's) or requirements-test.txt (the
# tests') changes. `make clean-venv` removes it.
PYTHON ?= python3
VENV ?= .venv
# `make test` skips the tests marked slow (multi-process, resume); CI runs them all with MARK=
MARK ?= not slow
ARGS ?=

VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: install pretrain test bench clean-venv

install: $(STAMP)

# The interpreter must be 3.10 or newer and able to make a virtual environment with pip in it
# (Debian and Ubuntu ship that part separately, as python3-venv).
$(VENV_PYTHON):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.10-3.12 or run make PYTHON=/path/to/python3" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); this project needs 3.10-3.12 (make PYTHON=python3.11 ...)" >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PYTHON) cannot create a virtual environment (no venv/ensurepip module); on Debian/Ubuntu install it with: sudo apt install python3-venv" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "error: $(PYTHON) -m venv $(VENV) failed; on Debian/Ubuntu install python3-venv" >&2; exit 1; }
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip

# Order-only on the interpreter: only a changed requirements file re-runs pip.
$(STAMP): requirements.txt requirements-test.txt | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	@touch $@

pretrain: install
	@mkdir -p runs
	$(VENV_PYTHON) cli.py fit -c configs/base.yaml $(ARGS)

test: install
	$(VENV_PYTHON) -m pytest -m "$(MARK)" $(ARGS)

bench: install
	$(VENV_PYTHON) benchmarks/run_all.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
