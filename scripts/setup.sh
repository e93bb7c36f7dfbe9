#!/usr/bin/env bash
# Installs the Debian packages that building, testing and `make run` need, then proves the
# build's system dependencies work. Idempotent and quiet when nothing is missing.
#
# One list, decided by package (dpkg-query), not by command: a command can be present while
# the files a build needs beside it are not (protoc without the well-known .proto files).
set -euo pipefail

packages=(
    protobuf-compiler   # protoc: etcd-client's build script compiles etcd's protos
    libprotobuf-dev     # google/protobuf/*.proto that those protos import
    prometheus          # promtool checks /metrics in tests
    etcd-server         # registry, discovery and end-to-end tests start a real etcd
    etcd-client         # etcdctl: tests delete keys as an operator would
    openssl             # certificates for the etcd TLS test
    postgresql          # SQL tests start a throwaway cluster (initdb, postgres, psql)
    redis-server        # Redis client and cache tests start a throwaway server (redis-cli too)
    nats-server         # NATS JetStream consumer tests start a throwaway `nats-server -js`
    golang-go           # `go tool pprof` reads the CPU and heap profiles in the profiling tests
    python3-venv        # a virtualenv for the Python tools below (python3 comes with it)
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "setup: need root or sudo to install: ${missing[*]}" >&2
            exit 1
        }
        sudo="sudo"
    fi
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# What the build relies on, checked for real: protoc must find the well-known protos.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
cat >"$probe/probe.proto" <<'PROTO'
syntax = "proto3";
import "google/protobuf/descriptor.proto";
PROTO
if ! protoc_err=$(protoc --proto_path="$probe" --descriptor_set_out="$probe/out.pb" \
    "$probe/probe.proto" 2>&1); then
    echo "setup: protoc cannot compile a proto importing google/protobuf/descriptor.proto" >&2
    echo "setup: (Debian packages protobuf-compiler and libprotobuf-dev provide it)" >&2
    echo "$protoc_err" >&2
    exit 1
fi
for tool in promtool etcd etcdctl openssl redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "setup: $tool is still missing after installing packages" >&2
        exit 1
    }
done

# nats-server lives in /usr/sbin, which a non-root PATH may lack: the tests look there too.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    echo "setup: nats-server is still missing after installing nats-server" >&2
    exit 1
fi

# Debian keeps PostgreSQL's programs off PATH, under /usr/lib/postgresql/<version>/bin.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo "setup: /usr/lib/postgresql/*/bin/initdb is still missing after installing postgresql" >&2
    exit 1
fi

for tool in rustfmt clippy-driver; do
    command -v "$tool" >/dev/null 2>&1 || rustup component add "${tool%-driver}" 2>/dev/null || true
done

# Python tools from PyPI, in a virtualenv beside the checkout (.tools/, ignored by git):
# openapi-spec-validator checks the OpenAPI documents the examples serve, and schemathesis
# fuzzes the live examples from them.
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/venv"
if [ ! -x "$venv/bin/openapi-spec-validator" ] || [ ! -x "$venv/bin/schemathesis" ]; then
    echo "setup: installing openapi-spec-validator and schemathesis into .tools/venv"
    python3 -m venv "$venv"
    # The system's CA bundle: pip's own would not know a CA the machine adds.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "openapi-spec-validator==0.7.*" "schemathesis==4.*"
fi
for tool in openapi-spec-validator schemathesis; do
    "$venv/bin/$tool" --help >/dev/null 2>&1 || {
        echo "setup: $tool does not run from $venv" >&2
        exit 1
    }
done
