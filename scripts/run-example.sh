#!/usr/bin/env bash
# Runs the user, order and notify example services together on their embedded defaults (static
# endpoints, no etcd needed). Ctrl-C stops all three cleanly (each drains and exits).
#
#   scripts/run-example.sh              # static endpoints, SQLite files in a fresh temp dir
#   scripts/run-example.sh --etcd       # both register in / discover through etcd on 127.0.0.1:2379
#   scripts/run-example.sh --postgres   # PostgreSQL: TRUSS_PG_URL's server (databases `user`
#                                       # and `order` must exist), else a throwaway cluster
#   scripts/run-example.sh --redis      # user reads by id through a Redis cache (with an L1):
#                                       # TRUSS_REDIS_URL's server, else a throwaway redis-server
# Each run starts from empty databases, so the README's answers hold; `cargo run -p user`
# instead keeps its SQLite file in ./data across restarts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p user -p order -p notify

use_etcd="" use_pg="" use_redis=""
for arg in "$@"; do
  case "$arg" in
    --etcd) use_etcd=1 ;;
    --postgres) use_pg=1 ;;
    --redis) use_redis=1 ;;
    *) echo "unknown option $arg (use --etcd, --postgres, --redis)" >&2; exit 2 ;;
  esac
done

scratch=$(mktemp -d)
env_etcd=(TRUSS_DATABASE__DATA_DIR="$scratch/data")
env_user=() env_order=() env_notify=()
if [[ -n "$use_pg" ]]; then
  if [[ -n "${TRUSS_PG_URL:-}" ]]; then
    base=${TRUSS_PG_URL%/}
  else
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    port=$((20000 + RANDOM % 20000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "starting PostgreSQL on 127.0.0.1:$port (cluster in $scratch/pg)"
    pg_user=$(id -un)
    if [[ "$(id -u)" -eq 0 ]]; then
      # initdb refuses root: the cluster belongs to `nobody`.
      pg_user=nobody
      install -d -o nobody "$scratch/pg"
    fi
    as_pg() { if [[ "$pg_user" == "nobody" ]]; then runuser -u nobody -- "$@"; else "$@"; fi; }
    as_pg "$bin/initdb" -D "$scratch/pg/db" -U postgres -A trust >"$scratch/initdb.log"
    as_pg "$bin/pg_ctl" -D "$scratch/pg/db" -l "$scratch/pg/server.log" -w \
      -o "-p $port -k $scratch/pg -c listen_addresses=127.0.0.1" start >/dev/null
    pg_stop() { as_pg "$bin/pg_ctl" -D "$scratch/pg/db" -m fast stop >/dev/null 2>&1 || true; }
    for db in user order notify; do as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"; done
    base="postgres://postgres@127.0.0.1:$port"
  fi
  env_user=(TRUSS_DATABASE__URL="$base/user")
  env_order=(TRUSS_DATABASE__URL="$base/order")
  # notify keeps its notifications in `notify` and reads order's outbox in `order`.
  env_notify=(TRUSS_DATABASE__URL="$base/notify" "TRUSS_CONSUMERS__ORDER.CREATED__URL=$base/order")
fi
if [[ -n "$use_redis" ]]; then
  redis_url=${TRUSS_REDIS_URL:-}
  if [[ -z "$redis_url" ]]; then
    # A server of its own: a shared one could hold cache entries of another run's database.
    port=$((20000 + RANDOM % 20000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "starting redis-server on 127.0.0.1:$port (in $scratch/redis)"
    mkdir -p "$scratch/redis"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$scratch/redis" --save '' \
      --appendonly no >"$scratch/redis/server.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "redis-server did not start:" >&2
      cat "$scratch/redis/server.log" >&2
      kill "$redis_pid" 2>/dev/null || true
      rm -rf "$scratch"
      exit 1
    fi
    redis_url="redis://127.0.0.1:$port/0"
  else
    # Each run starts from an empty database: entries of an earlier run would be stale.
    redis-cli -u "$redis_url" --scan --pattern 'user:*' | xargs -r redis-cli -u "$redis_url" del >/dev/null
  fi
  env_user+=(TRUSS_REDIS__URL="$redis_url" TRUSS_REDIS__CACHE__L1__ENABLED=true)
fi
if [[ -n "$use_etcd" ]]; then
  # TRUSS_* variables override the embedded defaults: register both, find users in etcd.
  env_etcd+=(TRUSS_REGISTRY__ETCD__ENDPOINTS='["http://127.0.0.1:2379"]')
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
names=(user order notify)
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
  if declare -F pg_stop >/dev/null; then pg_stop; fi
  if [[ -n "${redis_pid:-}" ]]; then kill "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
  exit "$failed"
}
trap stop INT TERM

# Own sessions: Ctrl-C reaches this script only, which then stops each service once.
setsid env "${env_etcd[@]}" "${env_user[@]}" ./target/debug/user &
pids+=($!)
setsid env "${env_etcd[@]}" "${env_order[@]}" ./target/debug/order &
pids+=($!)
setsid env "${env_etcd[@]}" "${env_notify[@]}" ./target/debug/notify &
pids+=($!)
sleep 1

cat <<'TXT'

user  : HTTP 127.0.0.1:8081  gRPC 127.0.0.1:9081  admin 127.0.0.1:9181
order : HTTP 127.0.0.1:8082  gRPC 127.0.0.1:9082  admin 127.0.0.1:9182
notify: HTTP 127.0.0.1:8083                       admin 127.0.0.1:9183  (consumes order.created)

Try (README.md lists the answers): log in as a demo user, then use the token.
  curl -s -o /tmp/truss-token.json -XPOST 127.0.0.1:8081/v1/login -H 'content-type: application/json' -d '{"email":"ada@example.com","password":"demo"}'
  curl -s -XPOST 127.0.0.1:8081/v1/users -H "authorization: Bearer $(cut -d'"' -f4 /tmp/truss-token.json)" -d '{"name":"Edsger","email":"ed@example.com"}'
  curl -s '127.0.0.1:8081/v1/users?page_size=2'
  curl -s -w ' %{http_code}\n' -XPOST 127.0.0.1:8082/v1/orders -H "authorization: Bearer $(cut -d'"' -f4 /tmp/truss-token.json)" -d '{"user_id":1,"item":"tea","quantity":2}'
  curl -s -w ' %{http_code}\n' -XPOST 127.0.0.1:8082/v1/orders -H "authorization: Bearer $(cut -d'"' -f4 /tmp/truss-token.json)" -d '{"user_id":99,"item":"tea","quantity":1}'
  curl -s 127.0.0.1:8083/v1/notifications
  curl -s 127.0.0.1:9183/metrics | grep '^truss_consumer_'
  curl -s 127.0.0.1:9182/metrics | grep '^truss_client_requests_total' | sort
Ctrl-C stops all three.
TXT
wait
