#!/usr/bin/env bash
# Local stack for development, demo and tests: one Apache Kafka broker (KRaft) and one PostgreSQL
# cluster, both on loopback ports of their own, all state under one folder ($RESPMON_STACK_DIR).
#
#   infra/stack.sh start    fetch what is missing, start both, wait until they answer (idempotent)
#   infra/stack.sh status   say what runs (exit 0 only when both answer)
#   infra/stack.sh stop     stop both; nothing is left running
#   infra/stack.sh clean    stop and delete all local state
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${RESPMON_STACK_DIR:-$ROOT/.stack}"
KAFKA_PORT="${RESPMON_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${RESPMON_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${RESPMON_PG_PORT:-15432}"
PG_DB="${RESPMON_PG_DB:-respmon}"
PG_USER="${RESPMON_PG_USER:-respmon}"
PG_PASSWORD="${RESPMON_PG_PASSWORD:-respmon}"

KAFKA_DIR="$STACK_DIR/kafka"
PG_HOME="$STACK_DIR/pg"

log() { printf 'stack: %s\n' "$*" >&2; }

# ---------- helpers ----------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 4))); do
    if "$@"; then return 0; fi
    sleep 0.25
  done
  log "$name did not answer within ${seconds}s"; return 1
}

# ---------- Kafka ----------
kafka_pid() { [[ -f "$KAFKA_DIR/kafka.pid" ]] && kill -0 "$(cat "$KAFKA_DIR/kafka.pid")" 2>/dev/null && cat "$KAFKA_DIR/kafka.pid"; }

kafka_fetch() {
  [[ -f "$KAFKA_DIR/libs/.complete" ]] && return 0
  command -v java >/dev/null || { log "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)"; exit 1; }
  command -v mvn >/dev/null || { log "mvn not found: apt-get install maven"; exit 1; }
  log "fetching Apache Kafka jars from Maven Central (infra/kafka/pom.xml)"
  mkdir -p "$KAFKA_DIR/libs"
  mvn -q -B -f "$ROOT/infra/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIR/libs"
  touch "$KAFKA_DIR/libs/.complete"
}

kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  {
    cat "$ROOT/infra/kafka/broker.properties"  # settings shared with the fault tests' cluster
    cat <<PROPS
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
log.dirs=$KAFKA_DIR/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
PROPS
  } > "$KAFKA_DIR/server.properties"
  cat > "$KAFKA_DIR/log4j.properties" <<PROPS
log4j.rootLogger=WARN, file
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_DIR/kafka.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
}

kafka_java() { java -Xms256m -Xmx512m -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -cp "$KAFKA_DIR/libs/*" "$@"; }

kafka_start() {
  if kafka_pid >/dev/null; then log "kafka already running (pid $(kafka_pid))"; return 0; fi
  if port_open "$KAFKA_PORT"; then log "port $KAFKA_PORT is taken by another process"; exit 1; fi
  kafka_fetch
  kafka_config
  if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
    local cluster_id; cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid)
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >/dev/null
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx768m -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
      -cp "$KAFKA_DIR/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      > "$KAFKA_DIR/stdout.log" 2>&1 < /dev/null &
  echo $! > "$KAFKA_DIR/kafka.pid"
  wait_for kafka 90 kafka_ready || { tail -20 "$KAFKA_DIR/stdout.log" "$KAFKA_DIR/kafka.log" >&2 || true; exit 1; }
}

kafka_ready() { port_open "$KAFKA_PORT" && grep -qE "Kafka Server started|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$KAFKA_DIR/kafka.log" 2>/dev/null; }

kafka_stop() {
  local pid; pid=$(kafka_pid) || { rm -f "$KAFKA_DIR/kafka.pid"; return 0; }
  log "stopping kafka (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$KAFKA_DIR/kafka.pid"
}

# ---------- PostgreSQL ----------
pg_bin() {
  local dir; dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z "$dir" || ! -x "$dir/postgres" ]]; then
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$dir"
}

# PostgreSQL refuses to run as root: run its commands as the 'postgres' system user then. That user
# must reach the data folder; when the checkout sits under a private folder (e.g. /root), the
# cluster lives under /var/tmp in a folder named after this checkout instead.
pg_dirs() {
  if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
    PG_HOME="/var/tmp/respmon-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  fi
  PG_DATA="$PG_HOME/data"; PG_RUN="$PG_HOME/run"; PG_LOG="$PG_HOME/postgres.log"
}

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_ready() { as_pg "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_start() {
  PG_BIN=$(pg_bin)
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
  fi
  pg_dirs
  mkdir -p "$PG_RUN"
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$PG_HOME"; fi
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    log "creating PostgreSQL cluster in $PG_DATA"
    local pwfile; pwfile=$(mktemp); echo "$PG_PASSWORD" > "$pwfile"; chmod 644 "$pwfile"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
  fi
  if pg_ready 2>/dev/null; then log "postgres already running on 127.0.0.1:$PG_PORT"; else
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-p $PG_PORT -k $PG_RUN -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" start >/dev/null
  fi
  wait_for postgres 60 pg_ready
  if ! PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $PG_DB" >/dev/null
  fi
}

pg_stop() {
  pg_dirs
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 0
  PG_BIN=$(pg_bin)
  log "stopping postgres"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null || true
}

# ---------- schema ----------
apply_schema() {
  local py="$ROOT/.venv/bin/python"
  [[ -x "$py" ]] || py=python3
  if "$py" -c "import respmon" 2>/dev/null; then
    "$py" -m respmon migrate
    "$py" -m respmon topics
  else
    log "respmon is not installed: run 'make install' then 'infra/stack.sh start' to apply the schema"
  fi
}

status() {
  local ok=0
  pg_dirs
  if kafka_pid >/dev/null && port_open "$KAFKA_PORT"; then echo "kafka:    running (pid $(kafka_pid), 127.0.0.1:$KAFKA_PORT)"; else echo "kafka:    stopped"; ok=1; fi
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -n "$PG_BIN" ]] && pg_ready 2>/dev/null; then echo "postgres: running (127.0.0.1:$PG_PORT, data $PG_DATA)"; else echo "postgres: stopped"; ok=1; fi
  return $ok
}

case "${1:-}" in
  start) mkdir -p "$STACK_DIR"; pg_start; kafka_start; [[ "${2:-}" == "--no-schema" ]] || apply_schema; status ;;
  stop) kafka_stop; pg_stop; status || true ;;
  status) status ;;
  clean) kafka_stop; pg_stop; rm -rf "$STACK_DIR" "$PG_HOME"; log "removed $STACK_DIR $PG_HOME" ;;
  *) echo "usage: $0 start [--no-schema] | stop | status | clean" >&2; exit 2 ;;
esac
