# Task runner. The two commands the README promises:
#   make demo   set up, build, boot the agent in QEMU, show its boot report
#   make test   set up, lint, build, run every test (unit, host, VM)
# Both install what they need on a fresh Debian 12 machine (apt packages, musl target,
# Debian's kernel in a cache); nothing needs to be installed by hand.

SHELL := /bin/bash
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl
BIN := target/$(MUSL)/release/initagent
FUZZ_SECONDS ?= 30

.PHONY: setup release check test demo bench fuzz clean

setup:
	bash tests/vm/setup.sh

release: setup
	$(CARGO) build --release --target $(MUSL)
	@file $(BIN)
	@echo "release binary: $(BIN), $$(stat -c %s $(BIN)) bytes stripped"

check: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features system-tests -- -D warnings
	$(CARGO) clippy --release --target $(MUSL) -- -D warnings

# Every test binary runs even when one fails (--no-fail-fast); the summary counts them all.
test: check release
	@set -o pipefail; INITAGENT_BIN=$(CURDIR)/$(BIN) $(CARGO) test --no-fail-fast --features system-tests 2>&1 \
	  | tee target/test.log; status=$$?; awk -f tests/summary.awk target/test.log; exit $$status

demo: release
	INITAGENT_BIN=$(CURDIR)/$(BIN) $(CARGO) test --features system-tests --test demo

# Benchmarks (never timed assertions): each prints both tools and the ratio.
bench: release
	INITAGENT_BIN=$(CURDIR)/$(BIN) $(CARGO) bench --features system-tests --bench stage1_vm
	INITAGENT_BIN=$(CURDIR)/$(BIN) $(CARGO) bench --features system-tests --bench modules_vm
	bash benches/depmod.sh
	INITAGENT_BIN=$(CURDIR)/$(BIN) bash benches/flist.sh
	INITAGENT_BIN=$(CURDIR)/$(BIN) bash benches/net.sh
	bash benches/size.sh

# Coverage-guided fuzzing of the pure parsers (cargo-fuzz on the stable toolchain). `dhcp`
# is also built like the shipped binary (-O, no debug assertions).
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd tests/fuzz && for t in cmdline profile kmod_index kmod_text modprobe_conf modprobe_args cli_args flist_rows manifest_inodes stamp mountinfo zdb_reply dhcp uevent redact rtnl cache_probe; do \
	  release=$$([ $$t = dhcp ] && echo -O); \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$release --fuzz-dir . $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	$(CARGO) clean
