# The two commands of the README: `make pretrain` and `make test`; each installs what it needs.
PYTHON ?= python3
# `make test` skips the tests marked slow (multi-process, resume); CI runs them all with MARK=
MARK ?= not slow
ARGS ?=

.PHONY: install pretrain test bench

install:
	$(PYTHON) -m pip install --quiet -r requirements.txt

pretrain: install
	$(PYTHON) cli.py fit -c configs/base.yaml $(ARGS)

test: install
	$(PYTHON) -m pytest -m "$(MARK)" $(ARGS)

bench: install
	$(PYTHON) benchmarks/run_all.py $(ARGS)
