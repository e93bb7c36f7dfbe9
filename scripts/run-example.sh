#!/usr/bin/env bash
# Runs the hello example on its embedded defaults (no etcd needed). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p hello
cat <<'TXT'
Try, once it logs "listening":
  curl 'http://127.0.0.1:8080/hello?name=Ada'
  curl 'http://127.0.0.1:8080/sleep?ms=500'
  curl -i http://127.0.0.1:9091/readyz
TXT
exec ./target/debug/hello --config examples/hello/hello.toml "$@"
