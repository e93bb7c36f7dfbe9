#!/usr/bin/env bash
# Runs the user and order example services together on their embedded defaults (static
# endpoints, no etcd needed). Ctrl-C stops both cleanly (each drains and exits).
#
#   scripts/run-example.sh          # static endpoints
#   scripts/run-example.sh --etcd   # both register in / discover through etcd on 127.0.0.1:2379
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p user -p order

env_etcd=()
if [[ "${1:-}" == "--etcd" ]]; then
  # TRUSS_* variables override the embedded defaults: register both, find users in etcd.
  env_etcd=(TRUSS_REGISTRY__ETCD__ENDPOINTS='["http://127.0.0.1:2379"]')
  if ! (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null; then
    data=$(mktemp -d)
    echo "starting etcd (data in $data)"
    etcd --data-dir "$data" --listen-client-urls http://127.0.0.1:2379 \
      --advertise-client-urls http://127.0.0.1:2379 >"$data/etcd.log" 2>&1 &
    etcd_pid=$!
    sleep 1
  fi
fi

pids=()
names=(user order)
stop() {
  trap - INT TERM
  echo
  echo "stopping..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local failed=0 i status
  for i in "${!pids[@]}"; do
    status=0
    wait "${pids[$i]}" 2>/dev/null || status=$?
    echo "${names[$i]} exited with status $status"
    [[ "$status" -eq 0 ]] || failed=1
  done
  if [[ -n "${etcd_pid:-}" ]]; then kill "$etcd_pid" 2>/dev/null || true; fi
  exit "$failed"
}
trap stop INT TERM

# Own sessions: Ctrl-C reaches this script only, which then stops each service once.
setsid env "${env_etcd[@]}" ./target/debug/user &
pids+=($!)
setsid env "${env_etcd[@]}" ./target/debug/order &
pids+=($!)
sleep 1

cat <<'TXT'

user  : HTTP 127.0.0.1:8081  gRPC 127.0.0.1:9081  admin 127.0.0.1:9181
order : HTTP 127.0.0.1:8082  gRPC 127.0.0.1:9082  admin 127.0.0.1:9182

Try (README.md lists the answers): log in as a demo user, then use the token.
  curl -s -o /tmp/truss-token.json -XPOST 127.0.0.1:8081/v1/login -H 'content-type: application/json' -d '{"email":"ada@example.com","password":"demo"}'
  curl -s -XPOST 127.0.0.1:8081/v1/users -H "authorization: Bearer $(cut -d'"' -f4 /tmp/truss-token.json)" -d '{"name":"Edsger","email":"ed@example.com"}'
  curl -s '127.0.0.1:8081/v1/users?page_size=2'
  curl -s -w ' %{http_code}\n' -XPOST 127.0.0.1:8082/v1/orders -H "authorization: Bearer $(cut -d'"' -f4 /tmp/truss-token.json)" -d '{"user_id":1,"item":"tea","quantity":2}'
  curl -s -w ' %{http_code}\n' -XPOST 127.0.0.1:8082/v1/orders -H "authorization: Bearer $(cut -d'"' -f4 /tmp/truss-token.json)" -d '{"user_id":99,"item":"tea","quantity":1}'
  curl -s 127.0.0.1:9182/metrics | grep '^truss_client_requests_total' | sort
Ctrl-C stops both.
TXT
wait
