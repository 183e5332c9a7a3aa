#!/bin/sh
# Regenerates the fuzz seeds in tests/fuzz/seeds/ (not committed) from the real fixtures:
# examples/marks-demo and tests/fixtures/typezoo built with Kbuild (their .ko files and
# manifests), a slice of the Debian kernel's own BTF (from /boot/vmlinuz-*), and the
# synthetic seeds of tests/support/fuzz_entry.rs (xenstore values as the helper publishes
# them, kallsyms tables, page-table chains of every mode, task/module lists, dump headers,
# recordings). `tests/fuzz/run --cmin` then merges them into the committed corpora.
# Run as root (Kbuild against /lib/modules), under `flock -s /tmp/vmark-cpu.lock`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seeds=$here/seeds
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$seeds"
mkdir -p "$seeds"
vmlinuz=$(ls /boot/vmlinuz-* | sort -V | tail -n 1)
python3 "$here/btf-slice.py" "$vmlinuz" "$tmp/vmlinux_slice.btf" 1500
cd "$root"
VMARK_FUZZ_SEEDS=$seeds VMARK_FUZZ_BTF=$tmp/vmlinux_slice.btf \
	cargo test -p vmark-tests --test fuzz_replay -- --ignored --exact write_seeds
du -sh "$seeds"/*
