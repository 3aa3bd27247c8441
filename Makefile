PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install install-test browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/lrp explain sample_images/ --out out/ --overwrite

test: install-test browser
	$(BIN)/python -m pytest -q

test-fast: install-test browser
	$(BIN)/python -m pytest -q -m "not slow"

browser:  # Chromium for the gallery's browser test (apt-get when missing and root)
	@sh .ci/chromium

clean:
	rm -rf $(VENV) out lrp-out
