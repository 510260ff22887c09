# make verify: run every built-in scenario in namespaces, capture, check (needs root)
# make test:   the whole test suite (privileged tests need root; CI runs as root)
# Both set up everything first: Debian packages when missing, then a project-local .venv.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# command:Debian package pairs the lab and the tests need
TOOLS  := tcpdump:tcpdump tshark:tshark nft:nftables ip:iproute2 setpriv:util-linux

.PHONY: setup system test verify record show-corpus clean

setup: system $(STAMP)

system:
	@missing=""; for pair in $(TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing >/dev/null \
	    || { echo "could not install:$$missing (run as root: sudo make setup)"; exit 3; }; \
	fi
	@command -v node >/dev/null 2>&1 || { echo "node (Node.js 20) is not on PATH: install Node.js 20 (https://nodejs.org or your distribution's nodejs package)"; exit 3; }

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

test: setup
	$(PY) -m pytest

verify: setup
	$(PY) -m verifier run

record: setup
	$(PY) -m verifier run --record

show-corpus: setup
	$(PY) -m verifier show ../shared/corpus/foreign/*.pcap*

clean:
	rm -rf $(VENV) build *.egg-info
