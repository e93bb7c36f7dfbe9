#!/usr/bin/env bash
# Fails when the dependency tree holds two copies of a crate that must be unique.
set -euo pipefail
# Two different versions of one crate; the same version listed twice (host and target
# feature sets) is one copy.
dups=$(cargo tree --locked --workspace -d --depth 0 -e normal,build,dev --prefix none \
    | awk 'NF >= 2 {print $1, $2}' | sort -u | awk '{print $1}' | uniq -d)
bad=0
for crate in hyper tonic tower http h2 prost axum tokio; do
    if grep -qx "$crate" <<<"$dups"; then
        echo "duplicate crate in the dependency tree: $crate" >&2
        cargo tree --workspace -i "$crate" -e normal,build,dev 2>&1 | head -20 >&2 || true
        bad=1
    fi
done
[ "$bad" -eq 0 ] && echo "dependency tree: one copy each of hyper, tonic, tower, http, h2, prost, axum, tokio"
exit "$bad"
