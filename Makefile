# holo3d: `make demo` (install + data + tiny training + few-view reconstruction of held-out objects), `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DATA_DIR ?= data/builtin_demo
DEMO_EXP ?= exp/demo

.PHONY: install demo test test-gpu dashboard bench-cpu clean-demo

$(VENV)/.installed: pyproject.toml constraints.txt scripts/install.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m holo3d.demo --data-dir $(DATA_DIR) --exp-dir $(DEMO_EXP)

test: install
	$(PY) -m pytest -q -m "not gpu" tests

test-gpu: install
	$(PY) -m pytest -q -m gpu tests

dashboard: install
	$(PY) -m holo3d.viz.dashboard --port 8097

bench-cpu: install
	$(PY) -m holo3d.bench --cpu

clean-demo:
	rm -rf $(DATA_DIR) $(DEMO_EXP)
