# The two set-up commands of the README:
#   make demo   create .venv, install crmlab, run the main job on the embedded CDNOW data
#   make test   create .venv, install crmlab with test tools, run the whole test suite
#               (and, as root on Debian/Ubuntu, install chromium for the report's real-browser test)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test bench browser clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crmlab demo

# Headless Chromium for tests/test_report.py (driven by the playwright package, which is a dev
# dependency; playwright's own browser download is not used). Without it that test is skipped,
# except under CI=true, where it fails.
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the report's browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "warning: could not install chromium; the browser test will be skipped (it fails under CI=true)"; \
	else echo "note: $(CHROMIUM) missing and not root; install chromium for the report's browser test"; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
