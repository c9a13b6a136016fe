# Two commands do all the set-up (see README):  make demo  and  make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/biofeedback session --client demo --virtual --speed 20 --protocol demo --auto --answers all-clear --headless

# Two workers (pytest-xdist, one test file each at a time), then the tests that start processes of their own
# (marked serial) alone, so that no virtual session shares a core with more than one other.
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial"
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m serial

clean:
	rm -rf $(VENV) build src/*.egg-info
