# Two commands do everything on a fresh machine:
#   make demo   -> creates .venv if needed, runs the default experiment
#   make test   -> creates .venv if needed, runs the test suite
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: demo test test-dispatch venv bench clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/byzantium compare configs/demo.yaml --force   # replaces runs/demo

# pytest exits 5 when it collects no test: for us that is a failure, never a silent pass.
test: $(STAMP)
	@$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; treating as failure" >&2; exit 1; fi; \
	exit $$rc

# The fast part of the suite (no multi-process runs) under other CPU kernels: ATen's portable
# (non-SIMD) kernels and MKL's conditional-numerical-reproducibility mode change the last bits of
# reductions and matrix products, as another x86-64 CPU would. A test that asserts bit equality
# on such a result fails here instead of on a user's machine.
DISPATCH := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE
test-dispatch: $(STAMP)
	@env $(DISPATCH) $(VENV)/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/distributed $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-dispatch: pytest collected no tests; treating as failure" >&2; exit 1; fi; \
	exit $$rc

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/aggregators.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
