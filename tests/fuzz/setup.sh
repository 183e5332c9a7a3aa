#!/bin/sh
# Installs what the coverage-guided fuzzing in tests/fuzz/ needs on a fresh machine:
# cargo-fuzz (the libFuzzer driver for Cargo) and the nightly toolchain it builds with
# (sanitizer instrumentation is nightly-only). The replay of the committed corpora
# (tests/fuzz_replay.rs) needs neither: it runs on stable in the ordinary test suite.
set -eu
if ! rustup toolchain list | grep -q '^nightly'; then
	rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
	cargo install cargo-fuzz --locked
fi
cargo fuzz --version
