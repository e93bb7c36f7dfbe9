#!/usr/bin/env bash
# The whole test suite: formatting, lints, the dependency-tree check, every test, and docs.
set -euo pipefail
cd "$(dirname "$0")/.."
# No incremental caches: a full suite run would only fill the disk with them.
export CARGO_INCREMENTAL=0

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== dependency tree"
bash scripts/check-duplicate-crates.sh
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== all checks passed"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
