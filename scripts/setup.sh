#!/usr/bin/env bash
# Installs what a fresh Debian machine with a Rust toolchain lacks to build and test truss.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)   # etcd-client's build script
command -v promtool >/dev/null 2>&1 || need+=(prometheus)         # promtool checks /metrics in tests
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)            # registry tests start a real etcd
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)         # ... and delete keys as an operator would
command -v openssl >/dev/null 2>&1 || need+=(openssl)             # ... and make certificates for its TLS test

if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install: ${need[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "setup: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

for tool in rustfmt clippy-driver; do
    command -v "$tool" >/dev/null 2>&1 || rustup component add "${tool%-driver}" 2>/dev/null || true
done
