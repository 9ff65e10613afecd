#!/usr/bin/env bash
# Makes sure the servers the adapter tests talk to are running on loopback:
# installs them with apt-get when missing (as root), starts them when down,
# and waits until each answers. Sourced or run by .ci/run.
set -euo pipefail

log() { printf '== services: %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, check command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
    sleep 1
  done
  log "$name did not come up"; return 1
}

apt_updated=0
need_pkg() { # binary, package...
  local bin=$1; shift
  command -v "$bin" >/dev/null 2>&1 && return 0
  log "installing $* (no $bin)"
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  # tests/replica.rs and tests/recovery.rs run PostgreSQL clusters of their
  # own (initdb, pg_basebackup from /usr/lib/postgresql/*/bin, as the
  # postgres user through runuser when root), and the SQLite backup script
  # uses the sqlite3 shell.
  need_pkg sqlite3 sqlite3
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_pkg pg_ctlcluster postgresql
  fi
  if ! port_open 5432; then
    need_pkg pg_ctlcluster postgresql
    log "starting PostgreSQL"
    local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_for PostgreSQL port_open 5432
  # Tests connect as postgres over TCP without a password.
  if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
    log "allowing trust auth for postgres on loopback"
    local hba; hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
}

ensure_mariadb() {
  if ! port_open 3306; then
    need_pkg mariadbd mariadb-server
    log "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  fi
  wait_for MariaDB port_open 3306
}

ensure_redis() {
  # The Redis Cluster tests start their own redis-server processes and join
  # them with redis-cli, whether or not a server already listens here.
  need_pkg redis-server redis-server
  need_pkg redis-cli redis-tools
  if ! port_open 6379; then
    need_pkg redis-server redis-server
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for Redis port_open 6379
}

ensure_rabbitmq() {
  if ! port_open 5672; then
    need_pkg rabbitmq-server rabbitmq-server
    log "starting RabbitMQ"
    rabbitmq-server -detached || true
  fi
  wait_for RabbitMQ port_open 5672
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  for s in "${@:-postgres mariadb redis rabbitmq}"; do
    for one in $s; do "ensure_$one"; done
  done
fi
