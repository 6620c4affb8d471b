#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers on loopback, for machines without Docker (CI among them).
# Same users, passwords, ports and database names as docker-compose.yml and .env.example.
#
#   bash scripts/db-servers.sh start [postgres|mysql|all]    # prints the export lines for the URLs
#   bash scripts/db-servers.sh stop  [postgres|mysql|all]
#   bash scripts/db-servers.sh status
#
# Needs the server binaries (Debian/Ubuntu: apt-get install postgresql mariadb-server). Data lives in
# $DB_SERVERS_DIR (default /tmp/session_management-db); delete it to start from scratch. These servers trade
# durability for speed (fsync off): they are for lessons and tests, never for data you want to keep.
set -euo pipefail

BASE_DIR=${DB_SERVERS_DIR:-/tmp/session_management-db}
PG_PORT=${POSTGRES_PORT:-5432}
MY_PORT=${MYSQL_PORT:-3306}
DB_USER=course
DB_PASSWORD=course
DB_NAME=sessions
PG_DIR="$BASE_DIR/postgres"
MY_DIR="$BASE_DIR/mysql"
# Servers refuse to run as root; when we are root they run as this unprivileged user.
RUN_AS=${DB_SERVERS_USER:-nobody}

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] && command -v pg_ctl >/dev/null; then dir=$(dirname "$(readlink -f "$(command -v pg_ctl)")"); fi
  [ -n "$dir" ] && [ -x "$dir/postgres" ] || die "PostgreSQL server binaries not found: apt-get install -y postgresql"
  printf '%s' "$dir"
}

pg_running() { [ -f "$PG_DIR/data/postmaster.pid" ] && as_server_user "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }

start_postgres() {
  local bin; bin=$(pg_bin)
  if pg_running; then say "postgres: already running on 127.0.0.1:$PG_PORT"; return; fi
  port_in_use "$PG_PORT" && die "port $PG_PORT is taken by another server (a system PostgreSQL? try: service postgresql stop), or set POSTGRES_PORT"
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown "$RUN_AS" "$PG_DIR" && chmod 700 "$PG_DIR"
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
  as_server_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR \
        -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null \
    || { tail -n 20 "$PG_DIR/server.log" >&2; die "postgres: did not start (log above: $PG_DIR/server.log)"; }
  # The initdb superuser is the course user, so it can create the tests' throwaway databases.
  if ! as_server_user "$bin/psql" -h "$PG_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    as_server_user "$bin/psql" -h "$PG_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres -qc "CREATE DATABASE $DB_NAME" >/dev/null
  fi
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

my_running() { [ -f "$MY_DIR/server.pid" ] && kill -0 "$(cat "$MY_DIR/server.pid")" 2>/dev/null; }

start_mysql() {
  local server; server=$(my_bin)
  if my_running; then say "mysql: already running on 127.0.0.1:$MY_PORT"; return; fi
  port_in_use "$MY_PORT" && die "port $MY_PORT is taken by another server (a system MariaDB? try: service mariadb stop), or set MYSQL_PORT"
  mkdir -p "$MY_DIR"
  [ "$(id -u)" = 0 ] && chown "$RUN_AS" "$MY_DIR"
  local fresh=0
  if [ ! -d "$MY_DIR/data/mysql" ]; then
    say "mysql: initialising $MY_DIR/data"
    local installer; installer=$(command -v mariadb-install-db || command -v mysql_install_db) \
      || die "mariadb-install-db not found: apt-get install -y mariadb-server"
    as_server_user "$installer" --no-defaults --datadir="$MY_DIR/data" --auth-root-authentication-method=normal \
      --skip-test-db >"$MY_DIR/install.log" 2>&1 || { tail -n 20 "$MY_DIR/install.log" >&2; die "mysql: install-db failed"; }
    fresh=1
  fi
  say "mysql: starting on 127.0.0.1:$MY_PORT"
  # --no-defaults: ignore /etc/mysql so the system's configuration cannot change ours.
  as_server_user "$server" --no-defaults --datadir="$MY_DIR/data" --socket="$MY_DIR/mysqld.sock" \
    --pid-file="$MY_DIR/server.pid" --port="$MY_PORT" --bind-address=127.0.0.1 --skip-log-bin \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --max-connections=1200 \
    --max-allowed-packet=64M --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
    --innodb-buffer-pool-size=256M --log-error="$MY_DIR/server.log" >/dev/null 2>&1 &
  local client; client=$(my_client)
  for _ in $(seq 1 120); do
    as_server_user "$client" --no-defaults -S "$MY_DIR/mysqld.sock" -uroot -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
  as_server_user "$client" --no-defaults -S "$MY_DIR/mysqld.sock" -uroot -e "SELECT 1" >/dev/null 2>&1 \
    || { tail -n 20 "$MY_DIR/server.log" >&2; die "mysql: did not start (log above: $MY_DIR/server.log)"; }
  if [ "$fresh" = 1 ] || ! my_sql -e "SELECT 1" >/dev/null 2>&1; then
    # The course user may create and drop the tests' throwaway databases (sessions_test...), like in compose.
    as_server_user "$client" --no-defaults -S "$MY_DIR/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'%';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\\_%\`.* TO '$DB_USER'@'%';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\\_%\`.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
  fi
  say "mysql: ready"
}

my_sql() { "$(my_client)" --no-defaults -h 127.0.0.1 -P "$MY_PORT" -u"$DB_USER" -p"$DB_PASSWORD" "$DB_NAME" "$@"; }

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

status() {
  if pg_running 2>/dev/null; then echo "postgres: running on 127.0.0.1:$PG_PORT"; else echo "postgres: stopped"; fi
  if my_running; then echo "mysql: running on 127.0.0.1:$MY_PORT"; else echo "mysql: stopped"; fi
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
case "$which" in postgres|mysql|all) ;; *) die "unknown server '$which': use postgres, mysql or all" ;; esac
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
  status) status ;;
  *) die "usage: bash scripts/db-servers.sh start|stop|status [postgres|mysql|all]" ;;
esac
