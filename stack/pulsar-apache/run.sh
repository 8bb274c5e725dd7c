#!/usr/bin/env bash
# Run Apache Pulsar standalone (broker + in-process bookie, RocksDB metadata) from Maven
# Central jars on the local JDK: no Docker, no Pulsar tarball.
#
# usage: run.sh start|stop|status|jars   (jars: resolve the jar cache only)
#
# env:
#   PULSAR_PORT        broker (binary protocol) port          default 6650
#   PULSAR_WEB_PORT    web/admin HTTP port                    default 8080
#   PULSAR_BOOKIE_PORT in-process bookie port                 default 3181
#   STACK_DIR          data/logs/pid/jar cache folder         default /tmp/pulsar-apache-try/stack
#   M2_REPO            Maven local repository                 default $HOME/.m2/repository
#   PULSAR_JAVA_OPTS   heap/direct memory flags               default -Xms256m -Xmx1g -XX:MaxDirectMemorySize=512m
#   PULSAR_START_TIMEOUT  seconds to wait for readiness       default 120
#   PULSAR_WIPE_DATA   1 = delete previous bookie/metadata data on start
#   PULSAR_LIB_DIR     the jar cache                          default $STACK_DIR/cache/pulsar-lib
#   PULSAR_CONF_TEMPLATE  the configuration template          default standalone.conf here
#   PULSAR_WEB_BASE    the admin API's base URL               default http://127.0.0.1:$PULSAR_WEB_PORT
#   PULSAR_CA_FILE, PULSAR_ADMIN_TOKEN_FILE   for an https admin API with token authentication
#                      (the secured stack, stack/secure/secure.sh)
#
# Files: jars in $STACK_DIR/cache/pulsar-lib, pid in $STACK_DIR/pulsar-apache.pid,
# log in $STACK_DIR/logs/pulsar-apache.log, data in $STACK_DIR/data/pulsar-apache.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PULSAR_PORT="${PULSAR_PORT:-6650}"
PULSAR_WEB_PORT="${PULSAR_WEB_PORT:-8080}"
PULSAR_BOOKIE_PORT="${PULSAR_BOOKIE_PORT:-3181}"
STACK_DIR="${STACK_DIR:-/tmp/pulsar-apache-try/stack}"
M2_REPO="${M2_REPO:-$HOME/.m2/repository}"
PULSAR_JAVA_OPTS="${PULSAR_JAVA_OPTS:--Xms256m -Xmx1g -XX:MaxDirectMemorySize=512m}"
PULSAR_START_TIMEOUT="${PULSAR_START_TIMEOUT:-120}"

LIB_DIR="${PULSAR_LIB_DIR:-$STACK_DIR/cache/pulsar-lib}"
PID_FILE="$STACK_DIR/pulsar-apache.pid"
LOG_DIR="$STACK_DIR/logs"
LOG_FILE="$LOG_DIR/pulsar-apache.log"
DATA_DIR="$STACK_DIR/data/pulsar-apache"
CONF_FILE="$STACK_DIR/conf/pulsar-apache-standalone.conf"
WEB_BASE="${PULSAR_WEB_BASE:-http://127.0.0.1:$PULSAR_WEB_PORT}"
ADMIN_URL="$WEB_BASE/admin/v2/clusters"
CURL=(curl -fsS -m 3)
[[ -n "${PULSAR_CA_FILE:-}" ]] && CURL+=(--cacert "$PULSAR_CA_FILE")
[[ -n "${PULSAR_ADMIN_TOKEN_FILE:-}" ]] && CURL+=(-H "Authorization: Bearer $(cat "$PULSAR_ADMIN_TOKEN_FILE")")

die() { echo "pulsar-apache: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE" 2>/dev/null)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

resolve_jars() {
  if [[ -f "$LIB_DIR/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found; cannot resolve Pulsar jars into $LIB_DIR"
  mkdir -p "$LIB_DIR" "$LOG_DIR"
  echo "pulsar-apache: resolving jars from Maven Central into $LIB_DIR (first run only)..."
  if ! mvn -B -q -s "$HERE/settings.xml" -f "$HERE/pom.xml" -Dmaven.repo.local="$M2_REPO" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB_DIR" \
      >"$LOG_DIR/pulsar-apache-mvn.log" 2>&1; then
    die "jar resolution failed (mvn); see $LOG_DIR/pulsar-apache-mvn.log: $(grep -m1 'ERROR' "$LOG_DIR/pulsar-apache-mvn.log" || true)"
  fi
  touch "$LIB_DIR/.complete"
}

start() {
  local pid
  if pid="$(running_pid)"; then echo "pulsar-apache: already running (pid $pid)"; return 0; fi
  for p in "$PULSAR_PORT" "$PULSAR_WEB_PORT" "$PULSAR_BOOKIE_PORT"; do
    port_open "$p" && die "port $p already in use on 127.0.0.1; set PULSAR_PORT/PULSAR_WEB_PORT/PULSAR_BOOKIE_PORT"
  done
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null || die "java not found (need JDK 17+)"
  resolve_jars

  mkdir -p "$LOG_DIR" "$DATA_DIR" "$(dirname "$CONF_FILE")"
  sed -e "s/@PULSAR_PORT@/$PULSAR_PORT/" -e "s/@PULSAR_WEB_PORT@/$PULSAR_WEB_PORT/" \
    "${PULSAR_CONF_TEMPLATE:-$HERE/standalone.conf}" >"$CONF_FILE"
  local wipe=() t0=$SECONDS
  [[ "${PULSAR_WIPE_DATA:-0}" == 1 ]] && wipe=(--wipe-data)

  # Run from the data dir: the broker resolves ./offloaders, ./protocols, ./interceptors
  # relative to its working directory.
  # shellcheck disable=SC2086
  (cd "$DATA_DIR" && exec nohup "$java" $PULSAR_JAVA_OPTS -XX:+UseG1GC \
      --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED \
      --add-opens java.base/sun.net=ALL-UNNAMED --add-opens java.management/sun.management=ALL-UNNAMED \
      --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
      --add-opens java.base/jdk.internal.platform=ALL-UNNAMED --add-opens java.base/java.nio=ALL-UNNAMED \
      --add-opens java.base/jdk.internal.misc=ALL-UNNAMED --add-opens java.base/java.lang=ALL-UNNAMED \
      -Dio.netty.tryReflectionSetAccessible=true -Dpulsar.allocator.exit_on_oom=true \
      -Dlog4j2.configurationFile="$HERE/log4j2.xml" \
      -cp "$LIB_DIR/*" org.apache.pulsar.PulsarStandaloneStarter \
      --config "$CONF_FILE" --no-functions-worker --no-stream-storage \
      --bookkeeper-port "$PULSAR_BOOKIE_PORT" \
      --metadata-dir "$DATA_DIR/metadata" \
      --bookkeeper-dir "$DATA_DIR/bookkeeper" \
      --zookeeper-dir "$DATA_DIR/zookeeper-unused" \
      "${wipe[@]}" \
      >>"$LOG_FILE" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + PULSAR_START_TIMEOUT)) body=""
  while (( SECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      die "broker process exited during startup; last error: $(grep -E 'ERROR|Exception|Error:' "$LOG_FILE" | tail -n 1 | cut -c1-300 || true) (log: $LOG_FILE)"
    fi
    if port_open "$PULSAR_PORT"; then
      body="$("${CURL[@]}" "$ADMIN_URL" 2>/dev/null || true)"
      # The standalone starter registers cluster "standalone" and public/default right after
      # the broker starts; wait for both so a client can produce immediately.
      if [[ "$body" == *standalone* ]] && \
         "${CURL[@]}" "$WEB_BASE/admin/v2/namespaces/public" 2>/dev/null | grep -q 'public/default'; then
        echo "pulsar-apache: ready (pid $pid) on 127.0.0.1:$PULSAR_PORT, admin $WEB_BASE, broker up in $((SECONDS - t0))s"
        return 0
      fi
    fi
    sleep 1
  done
  local portstate; portstate="$(port_open "$PULSAR_PORT" && echo yes || echo no)"
  stop >/dev/null
  die "not ready after ${PULSAR_START_TIMEOUT}s (port $PULSAR_PORT open: $portstate; $ADMIN_URL -> '${body}'); broker pid $pid stopped; see $LOG_FILE"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then echo "pulsar-apache: not running"; rm -f "$PID_FILE"; return 0; fi
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; echo "pulsar-apache: stopped (pid $pid)"; return 0; }
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  echo "pulsar-apache: killed (pid $pid) after 30s without clean shutdown"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PULSAR_PORT" && "${CURL[@]}" "$ADMIN_URL" >/dev/null 2>&1; then
      echo "pulsar-apache: running (pid $pid) pulsar://127.0.0.1:$PULSAR_PORT http://127.0.0.1:$PULSAR_WEB_PORT"
      return 0
    fi
    echo "pulsar-apache: process $pid alive but not serving on $PULSAR_PORT/$PULSAR_WEB_PORT"
    return 1
  fi
  echo "pulsar-apache: not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  jars) resolve_jars ;;
  *) echo "usage: $0 start|stop|status|jars" >&2; exit 2 ;;
esac
