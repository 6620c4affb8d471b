#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers on loopback, for machines without Docker (CI among them).
# Same users, passwords, ports and database names as docker-compose.yml and .env.example.
#
#   bash scripts/db-servers.sh start [postgres|mysql|all]    # prints the export lines for the URLs
#   bash scripts/db-servers.sh stop  [postgres|mysql|all]
#   bash scripts/db-servers.sh status [postgres|mysql|all]
#   bash scripts/db-servers.sh start|stop|status redis|redis-cluster   # Redis (lesson 10), prints REDIS_URL /
#                                        REDIS_CLUSTER_URL; ports $REDIS_PORT (6379), $REDIS_CLUSTER_PORT (7001-7006)
#   bash scripts/db-servers.sh start|stop|status patroni|galera   # lesson 12's clusters: etcd + 3 Patroni nodes
#                                        (prints FAILOVER_POSTGRES_URL), 3 MariaDB Galera nodes (GALERA_URL, node 1);
#                                        free ports, or upward from $PATRONI_BASE_PORT / $GALERA_BASE_PORT; `stop`
#                                        also removes their data. Started by session_management/servers/clusters.py
#                                        (through uv). `all` includes neither Redis nor the clusters.
#
#   eval "$(bash scripts/db-servers.sh start)"                # start and export POSTGRES_URL / MYSQL_URL
#
# Needs the server binaries (Debian/Ubuntu: apt-get install postgresql mariadb-server). Data lives in
# $DB_SERVERS_DIR (default /tmp/session_management-db); delete it to start from scratch. Ports: $POSTGRES_PORT
# (default 5432) and $MYSQL_PORT (default 3306). Progress goes to stderr and only the export lines to stdout.
# Durable by default, like a real server (PostgreSQL fsync, synchronous_commit and full_page_writes on; InnoDB
# flushing its log at every commit, doublewrite on): lesson 09's benchmark measures what production pays.
# DB_SERVERS_FAST=1 trades that for speed (all of them off): a crash of the machine can then lose or corrupt
# data, and benchmark numbers are flattered (the benchmark warns). Either way the servers are for lessons and
# tests, never for data you want to keep.
set -euo pipefail

BASE_DIR=${DB_SERVERS_DIR:-/tmp/session_management-db}
PG_PORT=${POSTGRES_PORT:-5432}
MY_PORT=${MYSQL_PORT:-3306}
DB_USER=course
DB_PASSWORD=course
DB_NAME=sessions
PG_DIR="$BASE_DIR/postgres"
MY_DIR="$BASE_DIR/mysql"
# Servers refuse to run as root; when we are root they run as this unprivileged user (it exists on every
# Debian system and needs no account of its own). Not root: the servers run as you.
RUN_AS=${DB_SERVERS_USER:-nobody}
READY_TIMEOUT=${DB_SERVERS_TIMEOUT:-60}  # seconds to wait for a server to accept connections
if [ "${DB_SERVERS_FAST:-0}" = 1 ]; then
  PG_DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  MY_DURABILITY="--innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0"
else
  PG_DURABILITY="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  MY_DURABILITY="--innodb-flush-log-at-trx-commit=1 --innodb-doublewrite=1"
fi

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

# The server user must reach the data under $BASE_DIR (a mktemp -d directory is 0700 root, for one).
prepare_base_dir() {
  mkdir -p "$BASE_DIR"
  [ "$(id -u)" = 0 ] || return 0
  id -u "$RUN_AS" >/dev/null 2>&1 || die "user '$RUN_AS' does not exist: set DB_SERVERS_USER to an unprivileged user"
  runuser -u "$RUN_AS" -- test -x "$BASE_DIR" || chmod a+x "$BASE_DIR"
  runuser -u "$RUN_AS" -- test -x "$BASE_DIR" \
    || die "user '$RUN_AS' cannot enter $BASE_DIR (a parent directory is closed to it): set DB_SERVERS_DIR elsewhere"
}

# Give a directory to the server user (root only), e.g. after DB_SERVERS_USER changed.
own_dir() {
  [ "$(id -u)" = 0 ] || return 0
  if [ "$(stat -c %U "$1")" != "$RUN_AS" ] || { [ -d "$1/data" ] && [ "$(stat -c %U "$1/data")" != "$RUN_AS" ]; }; then
    chown -R "$RUN_AS" "$1"
  fi
}

# The port a running server was started on (recorded in <dir>/port), else the one asked for.
recorded_port() { cat "$1/port" 2>/dev/null || printf '%s' "$2"; }

# A server that already runs keeps its port: use it for the URL, and say so if another one was asked for.
adopt_running_port() {  # name dir requested -> prints the port in use
  local port; port=$(recorded_port "$2" "$3")
  if [ "$port" = "$3" ]; then
    say "$1: already running on 127.0.0.1:$port"
  else
    say "$1: already running on 127.0.0.1:$port, not $3 (stop it first to change its port)"
  fi
  printf '%s' "$port"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_bin() {
  local dir version
  # An existing data directory needs the major version that created it.
  if [ -f "$PG_DIR/data/PG_VERSION" ]; then
    version=$(cat "$PG_DIR/data/PG_VERSION")
    if [ -x "/usr/lib/postgresql/$version/bin/postgres" ]; then printf '%s' "/usr/lib/postgresql/$version/bin"; return; fi
  fi
  # Else the newest version whose server is installed (a newer client-only postgresql-client-NN has no postgres).
  dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' -printf '%h\n' 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] && command -v pg_ctl >/dev/null; then dir=$(dirname "$(readlink -f "$(command -v pg_ctl)")"); fi
  [ -n "$dir" ] && [ -x "$dir/postgres" ] || die "PostgreSQL server binaries not found: apt-get install -y postgresql"
  printf '%s' "$dir"
}

pg_running() { [ -f "$PG_DIR/data/postmaster.pid" ] && as_server_user "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }

start_postgres() {
  local bin; bin=$(pg_bin)
  if pg_running; then PG_PORT=$(adopt_running_port postgres "$PG_DIR" "$PG_PORT"); return; fi
  port_in_use "$PG_PORT" && die "port $PG_PORT is taken by another server (a system PostgreSQL? try: service postgresql stop), or set POSTGRES_PORT"
  prepare_base_dir
  mkdir -p "$PG_DIR"
  chmod 700 "$PG_DIR"
  own_dir "$PG_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    say "postgres: initialising $PG_DIR/data"
    printf '%s\n' "$DB_PASSWORD" > "$PG_DIR/pwfile"
    [ "$(id -u)" = 0 ] && chown "$RUN_AS" "$PG_DIR/pwfile"
    as_server_user "$bin/initdb" -D "$PG_DIR/data" -U "$DB_USER" --pwfile="$PG_DIR/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
      || { tail -n 20 "$PG_DIR/initdb.log" >&2; die "postgres: initdb failed"; }
    rm -f "$PG_DIR/pwfile"
  fi
  say "postgres: starting on 127.0.0.1:$PG_PORT"
  # pg_ctl -w waits until the server accepts connections (or gives up after the timeout).
  as_server_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t "$READY_TIMEOUT" start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR \
        -c max_connections=300 $PG_DURABILITY" >/dev/null \
    || { tail -n 20 "$PG_DIR/server.log" >&2; die "postgres: did not start within ${READY_TIMEOUT}s (log above: $PG_DIR/server.log)"; }
  # ... and over TCP on loopback, the way the lessons connect.
  local waited=0
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres; do
    [ "$waited" -ge "$READY_TIMEOUT" ] && { tail -n 20 "$PG_DIR/server.log" >&2; die "postgres: no answer on 127.0.0.1:$PG_PORT after ${READY_TIMEOUT}s (log above)"; }
    sleep 1; waited=$((waited + 1))
  done
  # The initdb superuser is the course user (as in the postgres image), so it can create the tests' throwaway
  # databases. Every start (idempotent): its password, and the lessons' database.
  local psql_admin=("$bin/psql" -X -h "$PG_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres -v ON_ERROR_STOP=1 -qtA)
  as_server_user "${psql_admin[@]}" -c "ALTER ROLE \"$DB_USER\" WITH LOGIN PASSWORD '$DB_PASSWORD'" >/dev/null
  if [ -z "$(as_server_user "${psql_admin[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    as_server_user "${psql_admin[@]}" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
  fi
  # The way the lessons connect: TCP on loopback, with the password.
  PGPASSWORD=$DB_PASSWORD "$bin/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" -qtAc "SELECT 1" >/dev/null \
    || die "postgres: the server runs but $DB_USER cannot log in on 127.0.0.1:$PG_PORT (log: $PG_DIR/server.log)"
  # ... and only with it: the tests' wrong-password cases prove nothing against a server that trusts everyone.
  if PGPASSWORD=not-the-password "$bin/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" -qtAc "SELECT 1" >/dev/null 2>&1; then
    die "postgres: 127.0.0.1:$PG_PORT accepts a wrong password (trust authentication in $PG_DIR/data/pg_hba.conf): stop it and delete $PG_DIR to re-initialise with scram-sha-256"
  fi
  printf '%s\n' "$PG_PORT" > "$PG_DIR/port"
  say "postgres: ready"
}

stop_postgres() {
  if pg_running; then
    as_server_user "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null && say "postgres: stopped"
  else
    say "postgres: not running"
  fi
}

my_bin() {
  local name
  for name in mariadbd mysqld; do
    for dir in /usr/sbin /usr/bin /usr/local/bin; do
      [ -x "$dir/$name" ] && { printf '%s' "$dir/$name"; return; }
    done
  done
  die "MariaDB server binaries not found: apt-get install -y mariadb-server"
}

my_client() { command -v mariadb || command -v mysql || die "MariaDB client not found: apt-get install -y mariadb-client"; }

# Running = the pid file names a live mariadbd/mysqld (not a stale file whose pid was reused by another process).
my_running() {
  local pid
  [ -f "$MY_DIR/server.pid" ] && pid=$(cat "$MY_DIR/server.pid" 2>/dev/null) && [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null && grep -qE '^(mariadbd|mysqld)$' "/proc/$pid/comm" 2>/dev/null
}

start_mysql() {
  local server; server=$(my_bin)
  if my_running; then MY_PORT=$(adopt_running_port mysql "$MY_DIR" "$MY_PORT"); return; fi
  port_in_use "$MY_PORT" && die "port $MY_PORT is taken by another server (a system MariaDB? try: service mariadb stop), or set MYSQL_PORT"
  prepare_base_dir
  mkdir -p "$MY_DIR"
  chmod 700 "$MY_DIR"  # holds the socket, where the password-less root account logs in
  own_dir "$MY_DIR"
  rm -f "$MY_DIR/server.pid"  # stale: my_running said no
  if [ ! -d "$MY_DIR/data/mysql" ]; then
    say "mysql: initialising $MY_DIR/data"
    local installer; installer=$(command -v mariadb-install-db || command -v mysql_install_db) \
      || die "mariadb-install-db not found: apt-get install -y mariadb-server"
    as_server_user "$installer" --no-defaults --datadir="$MY_DIR/data" --auth-root-authentication-method=normal \
      --skip-test-db >"$MY_DIR/install.log" 2>&1 || { tail -n 20 "$MY_DIR/install.log" >&2; die "mysql: install-db failed"; }
  fi
  say "mysql: starting on 127.0.0.1:$MY_PORT"
  # --no-defaults: ignore /etc/mysql so the system's configuration cannot change ours. setsid: the server gets
  # a session of its own, so a Ctrl-C or a closed terminal in the shell that started it does not reach it.
  # --skip-name-resolve: TCP clients are matched by address (127.0.0.1 is course@'%', never root@localhost),
  # and no reverse DNS look-up slows down the benchmark's hundreds of connections.
  as_server_user setsid -w "$server" --no-defaults --datadir="$MY_DIR/data" --socket="$MY_DIR/mysqld.sock" \
    --pid-file="$MY_DIR/server.pid" --port="$MY_PORT" --bind-address=127.0.0.1 --skip-log-bin --skip-name-resolve \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --max-connections=1200 \
    --max-allowed-packet=64M $MY_DURABILITY \
    --innodb-buffer-pool-size=256M --log-error="$MY_DIR/server.log" </dev/null >/dev/null 2>&1 &
  local launcher=$! client; client=$(my_client)
  local tries=$((READY_TIMEOUT * 2))
  until as_server_user "$client" --no-defaults -S "$MY_DIR/mysqld.sock" -uroot -e "SELECT 1" >/dev/null 2>&1; do
    if ! kill -0 "$launcher" 2>/dev/null && ! my_running; then
      tail -n 20 "$MY_DIR/server.log" >&2; die "mysql: the server exited while starting (log above: $MY_DIR/server.log)"
    fi
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { tail -n 20 "$MY_DIR/server.log" >&2; die "mysql: not ready after ${READY_TIMEOUT}s (log above: $MY_DIR/server.log)"; }
    sleep 0.5
  done
  # Every start (idempotent, a few ms): a data directory from an older version of this script is brought up to date.
  # The course user may create and drop the tests' throwaway databases (sessions_test...), like in compose.
  # root keeps only its socket account (root@localhost, no password, behind the 0700 directory).
  as_server_user "$client" --no-defaults -S "$MY_DIR/mysqld.sock" -uroot <<SQL
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@'$(uname -n)';
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'%';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\\_%\`.* TO '$DB_USER'@'%';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\\_%\`.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
  # The way the lessons connect: TCP on loopback, with the course user's password.
  "$client" --no-defaults -h 127.0.0.1 -P "$MY_PORT" -u"$DB_USER" -p"$DB_PASSWORD" "$DB_NAME" -e "SELECT 1" >/dev/null \
    || die "mysql: the server runs but $DB_USER cannot log in on 127.0.0.1:$MY_PORT (log: $MY_DIR/server.log)"
  if "$client" --no-defaults -h 127.0.0.1 -P "$MY_PORT" -u"$DB_USER" -pnot-the-password "$DB_NAME" -e "SELECT 1" >/dev/null 2>&1; then
    die "mysql: 127.0.0.1:$MY_PORT accepts a wrong password for $DB_USER: the tests need password authentication"
  fi
  printf '%s\n' "$MY_PORT" > "$MY_DIR/port"
  say "mysql: ready"
}

stop_mysql() {
  if my_running; then
    local pid; pid=$(cat "$MY_DIR/server.pid")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "mysql: stopped"
  else
    say "mysql: not running"
  fi
}

# ---- Redis (lesson 10): a standalone server and a cluster of 3 primaries + 3 replicas -----------------------
RD_PORT=${REDIS_PORT:-6379}
RC_PORT=${REDIS_CLUSTER_PORT:-7001}  # the cluster's nodes use RC_PORT .. RC_PORT+5 (and +10000 for their bus)
RD_DIR="$BASE_DIR/redis"
RC_DIR="$BASE_DIR/redis-cluster"

rd_bin() { command -v redis-server || die "redis-server not found: apt-get install -y redis-server (brew install redis)"; }
rd_cli() { command -v redis-cli || die "redis-cli not found: apt-get install -y redis-tools"; }
rd_pid_running() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q '^redis-server' "/proc/$pid/comm" 2>/dev/null; }

# start_redis_node dir port [extra redis-server args...]: AOF on (appendfsync everysec), loopback only, no password.
start_redis_node() {
  local dir=$1 port=$2; shift 2
  if rd_pid_running "$dir/redis.pid"; then return 0; fi
  port_in_use "$port" && die "port $port is taken by another server (a system Redis? try: service redis-server stop), or set REDIS_PORT / REDIS_CLUSTER_PORT"
  prepare_base_dir
  mkdir -p "$dir"
  own_dir "$dir"
  as_server_user "$(rd_bin)" --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$dir/server.log" --appendonly yes --appendfsync everysec --save "" "$@" >/dev/null
  local tries=$((READY_TIMEOUT * 2))
  until [ "$("$(rd_cli)" -p "$port" ping 2>/dev/null)" = PONG ]; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { tail -n 20 "$dir/server.log" >&2; die "redis on $port: not ready after ${READY_TIMEOUT}s (log above)"; }
    sleep 0.5
  done
}

start_redis() {
  if rd_pid_running "$RD_DIR/redis.pid"; then RD_PORT=$(adopt_running_port redis "$RD_DIR" "$RD_PORT"); return; fi
  say "redis: starting on 127.0.0.1:$RD_PORT"
  start_redis_node "$RD_DIR" "$RD_PORT"
  printf '%s\n' "$RD_PORT" > "$RD_DIR/port"
  say "redis: ready"
}

start_redis_cluster() {
  if rd_pid_running "$RC_DIR/node0/redis.pid"; then RC_PORT=$(adopt_running_port redis-cluster "$RC_DIR" "$RC_PORT"); return; fi
  say "redis-cluster: starting 6 nodes on 127.0.0.1:$RC_PORT-$((RC_PORT + 5))"
  local n nodes=() fresh=0
  [ -f "$RC_DIR/node0/nodes.conf" ] || fresh=1  # else the nodes remember their cluster (a restart)
  for n in 0 1 2 3 4 5; do
    start_redis_node "$RC_DIR/node$n" $((RC_PORT + n)) --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 5000 --repl-diskless-sync-delay 0
    nodes+=("127.0.0.1:$((RC_PORT + n))")
  done
  if [ "$fresh" = 1 ]; then
    # First start: slots to the first three, a replica each (a restart reuses the nodes.conf files instead).
    "$(rd_cli)" --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$RC_DIR/create.log" 2>&1 \
      || { tail -n 20 "$RC_DIR/create.log" >&2; die "redis-cluster: create failed (log above)"; }
  fi
  local tries=$((READY_TIMEOUT * 2))
  for n in 0 1 2 3 4 5; do
    until "$(rd_cli)" -p $((RC_PORT + n)) cluster info | grep -q '^cluster_state:ok'; do
      tries=$((tries - 1))
      [ "$tries" -gt 0 ] || die "redis-cluster: node $((RC_PORT + n)) not ok after ${READY_TIMEOUT}s (logs: $RC_DIR/node*/server.log)"
      sleep 0.5
    done
  done
  printf '%s\n' "$RC_PORT" > "$RC_DIR/port"
  say "redis-cluster: ready"
}

# ---- Lesson 12's clusters: etcd + 3 Patroni/PostgreSQL nodes, 3 MariaDB Galera nodes --------------------------
# The course's Python starts them (session_management/servers/clusters.py: the lesson's own PatroniCluster and
# GaleraCluster, kept running in a directory here); it records the processes it started, and `stop` signals only
# those (and the servers whose pid files lie in that directory), then removes the directory.
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

cluster_needs() {  # kind: one line naming what to install
  local missing=()
  if [ "$1" = patroni ]; then
    command -v patroni >/dev/null || missing+=(patroni)
    command -v etcd >/dev/null || missing+=(etcd-server)
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  else
    { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; } && command -v mariadb-install-db >/dev/null \
      || missing+=(mariadb-server)
    [ -e /usr/lib/galera/libgalera_smm.so ] || [ -e /usr/lib/galera-4/libgalera_smm.so ] \
      || [ -e /usr/lib64/galera-4/libgalera_smm.so ] || missing+=(galera-4)
    command -v rsync >/dev/null || missing+=(rsync)  # the state transfer's tools
    command -v ss >/dev/null || command -v lsof >/dev/null || missing+=(iproute2)
  fi
  [ ${#missing[@]} = 0 ] || die "the $1 cluster needs packages that are not installed: apt-get install -y ${missing[*]}"
}

cluster() {  # start|stop|status kind
  local dir base
  dir=$(realpath -m "$BASE_DIR/$2")
  if [ "$2" = patroni ]; then base=${PATRONI_BASE_PORT:-}; else base=${GALERA_BASE_PORT:-}; fi
  if [ "$1" != start ] && [ ! -e "$dir" ]; then
    if [ "$1" = status ]; then echo "$2: stopped"; else say "$2: not running"; fi
    return 0
  fi
  if [ "$1" = start ]; then cluster_needs "$2"; prepare_base_dir; fi
  command -v uv >/dev/null || die "$2: uv not found (the course's Python starts the cluster): pip install uv"
  (cd "$ROOT_DIR" && exec uv run --quiet python -m session_management.servers.clusters "$1" "$2" --dir "$dir" \
    ${base:+--base-port "$base"})
}

stop_redis_dir() {  # name dir...
  local name=$1 dir pid stopped=0; shift
  for dir in "$@"; do
    if rd_pid_running "$dir/redis.pid"; then
      pid=$(cat "$dir/redis.pid"); kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      stopped=1
    fi
  done
  if [ "$stopped" = 1 ]; then say "$name: stopped"; else say "$name: not running"; fi
}

status() {
  if [ "$1" = redis ]; then
    if rd_pid_running "$RD_DIR/redis.pid"; then echo "redis: running on 127.0.0.1:$(recorded_port "$RD_DIR" "$RD_PORT") (data: $RD_DIR)"; else echo "redis: stopped"; fi
    return
  fi
  if [ "$1" = redis-cluster ]; then
    if rd_pid_running "$RC_DIR/node0/redis.pid"; then echo "redis-cluster: running on 127.0.0.1:$(recorded_port "$RC_DIR" "$RC_PORT")+5 (data: $RC_DIR)"; else echo "redis-cluster: stopped"; fi
    return
  fi
  if [ "$1" != mysql ]; then
    if pg_running 2>/dev/null; then echo "postgres: running on 127.0.0.1:$(recorded_port "$PG_DIR" "$PG_PORT") (data: $PG_DIR)"; else echo "postgres: stopped"; fi
  fi
  if [ "$1" != postgres ]; then
    if my_running; then echo "mysql: running on 127.0.0.1:$(recorded_port "$MY_DIR" "$MY_PORT") (data: $MY_DIR)"; else echo "mysql: stopped"; fi
  fi
}

print_urls() {
  case "$1" in
    postgres|all) echo "export POSTGRES_URL=postgresql+asyncpg://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME" ;;
  esac
  case "$1" in
    mysql|all) echo "export MYSQL_URL=mysql+aiomysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$MY_PORT/$DB_NAME" ;;
  esac
}

command=${1:-}
which=${2:-all}
case "$which" in
  postgres|mysql|all|redis|redis-cluster) ;;
  patroni|galera) case "$command" in start|stop|status) cluster "$command" "$which"; exit ;; esac ;;
  *) die "unknown server '$which': use postgres, mysql, all, redis, redis-cluster, patroni or galera" ;;
esac
# Redis is started on its own (`start redis`, `start redis-cluster`), so `all` needs no redis-server installed.
case "$command:$which" in
  start:redis) start_redis; echo "export REDIS_URL=redis://127.0.0.1:$RD_PORT/0"; exit 0 ;;
  start:redis-cluster) start_redis_cluster; echo "export REDIS_CLUSTER_URL=redis://127.0.0.1:$RC_PORT/0"; exit 0 ;;
  stop:redis) stop_redis_dir redis "$RD_DIR"; exit 0 ;;
  stop:redis-cluster) stop_redis_dir redis-cluster "$RC_DIR"/node*; exit 0 ;;
esac
case "$command" in
  start)
    if [ "$which" != mysql ]; then start_postgres; fi
    if [ "$which" != postgres ]; then start_mysql; fi
    print_urls "$which"
    ;;
  stop)
    if [ "$which" != mysql ]; then stop_postgres; fi
    if [ "$which" != postgres ]; then stop_mysql; fi
    ;;
  status) status "$which" ;;
  *) die "usage: bash scripts/db-servers.sh start|stop|status [postgres|mysql|all|redis|redis-cluster|patroni|galera]" ;;
esac
