#!/usr/bin/env bash
# Proves the README's two commands on a fresh machine: builds a minimal Debian 12 root, adds
# only what a person following the README already has (a C toolchain, git, make, curl,
# ca-certificates) plus the host's Rust toolchain mounted read-only, clones the commit under
# test into it, and runs, as written in the README:
#
#   make test   must print its closing line with 0 failed;
#   make run    in the background: each `$ curl` line of the README's examples section must
#               print the answer documented under it; SIGINT then stops the three services with
#               exit 0.
#
# The root is unmounted and deleted on success, on failure and on Ctrl-C. Needs root.
#
#   scripts/fresh-machine.sh            # the commit at HEAD (uncommitted changes are not seen)
#   KEEP_LOGS=dir scripts/fresh-machine.sh   # also copy the logs to dir
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=$(date +%s)

say() { printf 'fresh-machine: %s\n' "$*"; }
die() {
    say "FAILED: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mount)"
command -v debootstrap >/dev/null 2>&1 || {
    say "installing debootstrap on the host"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

# The mirror this machine's apt already uses for bookworm: never a host written in the repo.
mirror() {
    local uri
    uri=$(grep -rhsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
    [ -n "$uri" ] || uri=$(grep -hsE '^deb .*/debian/? bookworm' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | head -1 || true)
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
    echo "$uri"
}

root=$(mktemp -d /var/tmp/truss-fresh.XXXXXX)
# mktemp makes it 0700: inside the chroot that is `/`, which no other user could then
# traverse (PostgreSQL, run as `postgres`, could not even be executed).
chmod 755 "$root"
logs=$(mktemp -d /tmp/truss-fresh-logs.XXXXXX)

# Kills whatever still runs inside the root, unmounts everything below it, deletes it.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for proc in /proc/[0-9]*; do
        [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && kill -KILL "${proc#/proc/}" 2>/dev/null
    done
    sleep 0.5
    awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r \
        | while read -r m; do umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    if awk -v r="$root" 'index($2, r "/") == 1 {found = 1} END {exit !found}' /proc/mounts; then
        say "left $root in place: something is still mounted below it"
    else
        rm -rf "$root"
    fi
    if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$logs"/. "$KEEP_LOGS"/; fi
    [ "$status" -eq 0 ] || { [ -s "$logs/step.log" ] && tail -n 60 "$logs/step.log"; }
    rm -rf "$logs"
    exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# Runs a command inside the root with a clean environment: the host's toolchain read-only,
# an empty CARGO_HOME, nothing else from the host.
inside() {
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo CARGO_TERM_COLOR=never \
        bash -c "$1"
}

step() {
    local name=$1
    shift
    say "$name"
    "$@" >"$logs/step.log" 2>&1 || die "$name (log above)"
    cp "$logs/step.log" "$logs/$(echo "$name" | tr -c 'a-z0-9\n' '-').log"
    mv "$logs/step.log" "$logs/last.log"
}

build_root() {
    debootstrap --variant=minbase bookworm "$root" "$(mirror)"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
    mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
    # The network's extra certificate authorities, if it has any: not the project's.
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
}

readme_user_has() {
    inside 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends build-essential git make curl ca-certificates >/dev/null \
        && update-ca-certificates >/dev/null'
}

mount_toolchain() {
    local rustup_home cargo_bin
    rustup_home=${RUSTUP_HOME:-$(rustup show home 2>/dev/null || echo "$HOME/.rustup")}
    cargo_bin=$(dirname "$(command -v cargo)")
    mkdir -p "$root/opt/rustup" "$root/opt/cargo/bin" "$root/root/.cargo"
    mount --bind "$rustup_home" "$root/opt/rustup"
    mount -o remount,bind,ro "$root/opt/rustup"
    mount --bind "$cargo_bin" "$root/opt/cargo/bin"
    mount -o remount,bind,ro "$root/opt/cargo/bin"
    inside 'cargo --version && rustc --version'
}

clone_commit() {
    local sha
    sha=$(git -C "$repo" rev-parse HEAD)
    [ -z "$(git -C "$repo" status --porcelain)" ] || say "note: uncommitted changes are not part of the run"
    git -c init.defaultBranch=main clone -q --no-local "$repo" "$root/root/truss"
    git -C "$root/root/truss" -c advice.detachedHead=false checkout -q --detach "$sha"
    say "commit under test: $sha"
}

make_test() {
    inside 'cd /root/truss && make test'
}

# The `$ curl ...` lines of the README's examples section, each with the answer under it.
readme_examples() {
    awk '/^## Examples/ {on = 1; next} /^## / {on = 0}
         on && /^```/ {block = !block; next}
         on && block' "$repo/README.md"
}

# Starts `make run` in its own process group (as a terminal would), checks the README's curl
# lines, then sends SIGINT to the group, as Ctrl-C does.
make_run() {
    set -m
    inside 'cd /root/truss && exec make run' >"$logs/run.log" 2>&1 &
    local pid=$!
    set +m
    local ready=""
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null 127.0.0.1:9181/readyz && curl -sf -o /dev/null 127.0.0.1:9182/readyz \
            && curl -sf -o /dev/null 127.0.0.1:9183/readyz; then
            ready=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    [ -n "$ready" ] || { cat "$logs/run.log"; kill -INT -- "-$pid" 2>/dev/null; return 1; }
    check_curls || { kill -INT -- "-$pid" 2>/dev/null; cat "$logs/run.log"; return 1; }
    kill -INT -- "-$pid"
    wait "$pid" || true
    cat "$logs/run.log"
    grep -q '^user exited with status 0$' "$logs/run.log" || return 1
    grep -q '^order exited with status 0$' "$logs/run.log" || return 1
    grep -q '^notify exited with status 0$' "$logs/run.log" || return 1
}

check_curls() {
    local cmd="" expected="" n=0 line
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ "$line" == '$ '* ]]; then
            [ -z "$cmd" ] || { check_curl "$cmd" "$expected" || return 1; n=$((n + 1)); }
            cmd=${line#'$ '}
            expected=""
        elif [ -n "$cmd" ]; then
            expected+="${expected:+$'\n'}$line"
        fi
    done < <(readme_examples)
    [ -z "$cmd" ] || { check_curl "$cmd" "$expected" || return 1; n=$((n + 1)); }
    [ "$n" -gt 0 ] || { echo "no \$ curl lines in the README's examples section"; return 1; }
    echo "all $n README curl lines answered as documented"
}

check_curl() {
    local got
    got=$(bash -c "$1" 2>&1 | tr -d '\r') || true
    if [ "$got" = "$2" ]; then
        echo "ok: $1"
    else
        printf 'README line: %s\nexpected:\n%s\ngot:\n%s\n' "$1" "$2" "$got"
        return 1
    fi
}

# Everything runs from one function, parsed whole before it starts: editing this file while
# it runs cannot change what the run does.
main() {
    step "building a minimal Debian 12 root" build_root
    step "installing what a README reader has (build-essential git make curl ca-certificates)" readme_user_has
    step "mounting the host's Rust toolchain read-only" mount_toolchain
    step "cloning the commit under test" clone_commit
    say "make test (a cold build: about 15 minutes on 2 cores)"
    inside 'cd /root/truss && make test' 2>&1 | tee "$logs/make-test.log" | grep -E '^(== |tests: |setup: |error)' || true
    closing=$(grep -E '^tests: [0-9]+ passed, [0-9]+ failed$' "$logs/make-test.log" | tail -1 || true)
    [ -n "$closing" ] || { tail -n 80 "$logs/make-test.log"; die "make test printed no closing line"; }
    [[ "$closing" == *" 0 failed" ]] || { tail -n 80 "$logs/make-test.log"; die "make test: $closing"; }
    step "make run: README curl lines, then SIGINT" make_run
    grep -E '^(ok:|all )' "$logs/last.log"
    say "passed in $(( $(date +%s) - started ))s: make test ($closing), make run (curl lines as documented, clean stop)"
}

main "$@"; exit $?
