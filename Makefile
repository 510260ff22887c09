# make verify: run every built-in scenario in namespaces, capture, check (needs root)
# make test:   the whole test suite (privileged tests need root; CI runs as root)
# Both set up everything first: Debian packages when missing, then a project-local .venv.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# command:Debian package pairs the lab and the tests need
TOOLS  := tcpdump:tcpdump tshark:tshark nft:nftables ip:iproute2 setpriv:util-linux gcc:gcc

.PHONY: setup system test verify record show-corpus clean runtimes reachable

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

# setup.py compiles verifier/wire/_showloop.c (show --json's loop; gcc and Python's headers)
$(STAMP): pyproject.toml setup.py verifier/wire/_showloop.c
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# fuzz-setup: tests/test_fuzz.py runs a short fuzz pass of the sanitizer build (clang, atheris)
test: reachable setup runtimes fuzz-setup
	$(PY) -m pytest

verify: setup
	$(PY) -m verifier run

record: setup
	$(PY) -m verifier run --record

# make show-corpus: `verifier show` on the foreign captures the repository holds (tests/data/foreign)
show-corpus: setup
	$(PY) -m verifier show tests/data/foreign/*.pcap*

# make reachable: scenario programs run as an unprivileged user (the sudo caller, else nobody) and
# run the runtimes of runtimes/; a checkout that user cannot enter (e.g. under /root, mode 0700) is
# refused in one line naming the folders and the chmod, before anything is installed or tested
# (only as root: without root no program runs). python3, not the venv: it may not exist yet.
reachable:
	@python3 -m verifier.lab.runtime --checkout

# make runtimes: the pinned runtimes of runtimes/package.json + package-lock.json (Node.js 22
# and 24, Bun, Deno) from the npm registry into runtimes/node_modules, never globally. Platform
# packages that carry their binary in the tarball; --ignore-scripts: no install script runs, so
# nothing is fetched from anywhere else. Scenario programs run as an unprivileged user: the
# binaries are made readable and executable by all, and checked by running them as that user
# (the binaries are verifier/lab/runtime.py's LOCAL_BINARIES).
runtimes: reachable runtimes/node_modules/.installed

runtimes/node_modules/.installed: runtimes/package.json runtimes/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is not on PATH: it comes with Node.js (needed to install the pinned runtimes)"; exit 3; }
	cd runtimes && npm ci --ignore-scripts --no-bin-links --no-audit --no-fund
	chmod -R a+rX runtimes/node_modules
	@python3 -m verifier.lab.runtime --installed
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info

# make bench: the benchmarks of bench/ (bench/README.md: the latest figures, how to read them).
# WHICH=harness: harness overhead per scenario and the catalogue, against a sleep-based harness.
# WHICH=show: `verifier show --json` on a ~1M-packet and a ~200k-packet capture against tshark,
# dpkt and scapy (the captures are made once, as root, by bench/gen_capture.py: ~2 min).
# Default: both. Needs root (namespaces); the bench extras go into .venv only.
WHICH ?= all
.PHONY: bench
bench: setup
	$(PY) -m pip install -q -r bench/requirements.txt
	@if [ "$(WHICH)" != harness ]; then \
	  for spec in 120000:conn120k 25000:conn25k; do \
	    file=bench/data/$${spec##*:}.pcap; \
	    test -f $$file || $(PY) bench/gen_capture.py --connections $${spec%%:*} --out $$file || exit $$?; \
	  done; \
	  $(PY) bench/check_fast_paths.py bench/data/conn25k.pcap || exit $$?; \
	  $(PY) bench/bench_show.py --json bench/data/results-show.json || exit $$?; \
	fi
	@if [ "$(WHICH)" != show ]; then \
	  $(PY) bench/bench_harness.py --profile --json bench/data/results-harness.json || exit $$?; \
	fi

# make fuzz: the coverage-guided fuzzer (atheris) on the sanitizer build of show's C loop (clang,
# -fsanitize=address,undefined), FUZZ_SECONDS long (default 10 minutes), seeded from tests/data:
# it says which build it fuzzes and prints executions, coverage and findings (docs/fuzzing.md).
# A finding exits 1, its input saved under fuzz/build/findings/. make test runs a 30 s pass.
FUZZ_SECONDS ?= 600
FUZZ_STAMP := $(VENV)/.fuzz-installed
.PHONY: fuzz fuzz-setup wheel
fuzz: fuzz-setup
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS)

# clang and its sanitizer runtimes (Debian's clang leaves libclang-rt-dev to a recommendation)
# when a sanitizer build of an empty file fails, llvm-symbolizer (Debian's llvm: the C loop's
# coverage by function) when missing; atheris from the `fuzz` extra (a manylinux wheel)
fuzz-setup: setup $(FUZZ_STAMP)
	@missing=""; \
	echo 'int x;' | clang -x c -fsanitize=address,undefined,fuzzer-no-link -shared -fPIC - -o /dev/null 2>/dev/null \
	  || missing="clang libclang-rt-dev"; \
	command -v llvm-symbolizer >/dev/null 2>&1 || missing="$$missing llvm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing (the fuzzer's sanitizer build)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { echo "could not install $$missing (run as root: sudo make fuzz-setup)"; exit 3; }; \
	fi

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	@$(PY) -m pip install -q -e '.[test,fuzz]'
	@touch $@

# make wheel: a binary wheel of verifier (the compiled loop inside: users need no compiler) in
# dist/; tests/test_wheel.py installs one into a fresh venv. Linux, macOS and Windows wheels are
# built by .github/workflows/wheels.yml (cibuildwheel).
wheel: setup
	@mkdir -p dist && echo '*' > dist/.gitignore
	$(PY) -m pip wheel -q --no-deps -w dist .
	@ls -1 dist/*.whl
