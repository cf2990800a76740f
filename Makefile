# Two commands a newcomer needs:  make repro   and   make test
# Both install what they need first and are quick when it is already there.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.requirements-installed
# Debian packages the mini corpus is built from: real speech (Asterisk prompts, KDE word and letter
# voices, the voice acting of three freeware games) and TTS engines.
APT_PACKAGES := asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 \
	asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 \
	asterisk-prompt-it-menardi-wav asterisk-prompt-es-co asterisk-prompt-fr-armelle \
	ktuberling-data klettres-data drascula flight-of-the-amazon-queen fillets-ng-data-cs \
	fillets-ng-data-nl espeak-ng flite festival festvox-kallpc16k codec2

.PHONY: repro test test-fast install system-deps dvc-config bench clean-data

repro: install system-deps dvc-config
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Every test: the fast unit subset and the slow and end-to-end ones.
test: install system-deps dvc-config
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

# The edit-test loop: everything but the tests marked slow or end_to_end.
test-fast: install system-deps dvc-config
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow and not end_to_end" tests

install: $(STAMP)

# The pinned requirements, then this project itself, editable (pyproject.toml): `import pipeline`
# works from anywhere, with no sys.path edits.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "The mini corpus needs these Debian packages: $$missing"; \
	    echo "Install them as root:  sudo apt-get update && sudo apt-get install -y $$missing"; \
	    exit 1; \
	  fi; \
	  echo "Installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# DVC must never reach for the network: no analytics, no update check.
dvc-config: install
	@test -d .dvc || $(BIN)/dvc init -q
	@$(BIN)/dvc config core.analytics false
	@$(BIN)/dvc config core.check_update false

bench: install system-deps
	$(BIN)/python bench/extract.py

clean-data:
	rm -rf data models scores plots dvclive
