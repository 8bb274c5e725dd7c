#!/usr/bin/env bash
# The local stack: Apache Kafka (one KRaft node), a Pulsar-protocol broker and PostgreSQL,
# run as plain processes (no Docker engine needed). Data, logs and pid files live under
# $STACK_DIR (default: .stack/ in the repository, git-ignored).
#
#   stack/stack.sh up|down|status|logs|clean [component...]
#   stack/stack.sh jars    resolve the Kafka and Apache Pulsar jar caches only (make images)
#
# Components: kafka pulsar postgres (default: all); kafka3, a three-node Kafka cluster for
# the fault harness, only when named. Every `up` is idempotent and waits,
# bounded, until each component answers. Ports and paths are overridable by environment.
# SECURE=1: the same stack secured (TLS, credentials, ACLs; stack/secure/secure.sh), its data
# under $STACK_DIR/secure, the jar cache shared.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx1g}"
# The three-node cluster (`up kafka3`): node n listens on KAFKA3_PORT + 2(n-1), its controller
# one port above.
KAFKA3_PORT="${KAFKA3_PORT:-19092}"
KAFKA3_HEAP="${KAFKA3_HEAP:--Xms128m -Xmx512m}"
PULSAR_PORT="${PULSAR_PORT:-6650}"
PULSAR_WEB_PORT="${PULSAR_WEB_PORT:-8080}"
PULSAR_IMPL="${PULSAR_IMPL:-apache}"
PULSAR_BOOKIE_PORT="${PULSAR_BOOKIE_PORT:-3181}"
PG_PORT="${PG_PORT:-5432}"
PG_DB="${PG_DB:-saga_db}"
PG_PASSWORD="${PG_PASSWORD:-postgres}"
WAIT_SECONDS="${WAIT_SECONDS:-60}"
UV="${UV:-$ROOT/stack/uv.sh}"

CACHE="${STACK_CACHE:-$STACK_DIR/cache}"
SECURE="${SECURE:-0}"
if [[ "$SECURE" == 1 ]]; then
    STACK_DIR="$STACK_DIR/secure"
    export PGSSLMODE=require
fi
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"

say() { printf '%s\n' "stack: $*"; }
die() { printf '%s\n' "stack: ERROR: $*" >&2; exit 1; }

if [[ "$SECURE" == 1 ]]; then
    # shellcheck source=secure/secure.sh
    . "$ROOT/stack/secure/secure.sh"
    mkdir -p "$STACK_DIR/secrets"; chmod 700 "$STACK_DIR/secrets"
    PG_PASSWORD="$(secret postgres-superuser-password)"
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_owner() {
    # One line naming what listens on a port, for error messages.
    if command -v ss >/dev/null 2>&1; then
        ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1
    fi
}

pid_alive() { # pidfile [pattern]: the process lives and (after a reboot the pid may be
    # reused by another program) its command line matches what we started
    [[ -f "$1" ]] || return 1
    local pid; pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -z "${2:-}" ]] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

wait_port() { # name port pidfile log
    local name=$1 port=$2 pidfile=$3 log=$4 i
    for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
        if port_open "$port"; then return 0; fi
        if [[ -n "$pidfile" ]] && ! pid_alive "$pidfile"; then
            tail -n 20 "$log" >&2 || true
            die "$name exited during start-up; its log is $log (last lines above)"
        fi
        sleep 0.25
    done
    die "$name did not listen on 127.0.0.1:$port within ${WAIT_SECONDS}s; see $log"
}

refuse_busy_port() { # name port
    if port_open "$2"; then
        local owner; owner="$(port_owner "$2")"
        local hint="stop it or set the port variable"
        [[ "$SECURE" == 1 ]] && hint="the plaintext stack? stop it first (make dev-down), then make dev-up SECURE=1"
        die "port $2 for $1 is taken by ${owner:-another process}; $hint (see TROUBLESHOOTING.md)"
    fi
}

stop_pidfile() { # name pidfile pattern
    local name=$1 pidfile=$2 pattern=$3 pid i
    if ! pid_alive "$pidfile" "$pattern"; then rm -f "$pidfile"; say "$name not running"; return 0; fi
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; say "$name killed (did not stop in 30s)"; fi
    rm -f "$pidfile"
    say "$name stopped"
}

# ---------------------------------------------------------------- kafka
kafka_lib() { printf '%s' "$CACHE/kafka-lib"; }

kafka_resolve() {
    local lib; lib="$(kafka_lib)"
    if [[ -f "$lib/.complete" && "$lib/.complete" -nt "$ROOT/stack/kafka/pom.xml" ]]; then return 0; fi
    command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is missing: it resolves Kafka's jars. Install it: apt-get install -y maven"
    say "resolving Apache Kafka jars from Maven Central (first run only)"
    rm -rf "$lib"
    mvn -q -B -f "$ROOT/stack/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$lib" -DincludeScope=runtime >"$LOGS/kafka-resolve.log" 2>&1 \
        || { tail -n 20 "$LOGS/kafka-resolve.log" >&2; die "Maven could not resolve Kafka's jars; see $LOGS/kafka-resolve.log"; }
    touch "$lib/.complete"
}

kafka_up() {
    local pidfile="$RUN/kafka.pid" data="$STACK_DIR/kafka/data" conf="$STACK_DIR/kafka/server.properties"
    if pid_alive "$pidfile" kafka.Kafka; then say "kafka already running (pid $(cat "$pidfile")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
    command -v java >/dev/null 2>&1 || die "Java is missing: Kafka needs a JDK 17+. Install it: apt-get install -y openjdk-17-jdk-headless"
    refuse_busy_port kafka "$KAFKA_PORT"
    refuse_busy_port "kafka controller" "$KAFKA_CONTROLLER_PORT"
    kafka_resolve
    mkdir -p "$data"
    local scram=()
    if [[ "$SECURE" == 1 ]]; then
        secure_pki
        secure_kafka_conf "$conf" "$data"
        mapfile -t scram < <(secure_kafka_format_args)
    else
        sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@KAFKA_CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
            -e "s#@DATA@#$data#g" "$ROOT/stack/kafka/server.properties" >"$conf"
    fi
    local cp; cp="$(kafka_lib)/*"
    if [[ ! -f "$data/meta.properties" ]]; then
        local cluster_id; cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null)"
        java -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" --standalone "${scram[@]}" \
            >"$LOGS/kafka-format.log" 2>&1 || die "formatting Kafka storage failed; see $LOGS/kafka-format.log"
    fi
    # shellcheck disable=SC2086
    nohup java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.yaml" \
        -cp "$cp" kafka.Kafka "$conf" >"$LOGS/kafka.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_port kafka "$KAFKA_PORT" "$pidfile" "$LOGS/kafka.log"
    local i
    for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
        grep -q "Kafka Server started" "$LOGS/kafka.log" && break
        pid_alive "$pidfile" kafka.Kafka || die "kafka exited during start-up; see $LOGS/kafka.log"
        sleep 0.25
    done
    grep -q "Kafka Server started" "$LOGS/kafka.log" || die "kafka did not report started within ${WAIT_SECONDS}s; see $LOGS/kafka.log"
    if [[ "$SECURE" == 1 ]]; then secure_kafka_acls "$cp"; say "kafka secured: SASL_SSL (SCRAM-SHA-512) only, ACLs on"; fi
    say "kafka up: Apache Kafka $(kafka_version) (KRaft, 1 node) on 127.0.0.1:$KAFKA_PORT, pid $(cat "$pidfile")"
}

kafka_version() { sed -n 's/.*<kafka.version>\(.*\)<\/kafka.version>.*/\1/p' "$ROOT/stack/kafka/pom.xml"; }

kafka_down() { stop_pidfile kafka "$RUN/kafka.pid" kafka.Kafka; }

# ---------------------------------------------------------------- kafka3
# Three KRaft nodes (broker + controller each), replication factor 3, min.insync.replicas 2:
# the shape a production cluster has. Not part of the default stack; the fault harness
# (make chaos, scenario kafka3) starts it, kills a node with SIGKILL under load, stops it.
kafka3_port() { echo $((KAFKA3_PORT + 2 * ($1 - 1))); }

kafka3_up() {
    command -v java >/dev/null 2>&1 || die "Java is missing: Kafka needs a JDK 17+. Install it: apt-get install -y openjdk-17-jdk-headless"
    kafka_resolve
    local cp; cp="$(kafka_lib)/*"
    local voters="" n
    for n in 1 2 3; do voters+="${voters:+,}$n@127.0.0.1:$(($(kafka3_port "$n") + 1))"; done
    local cluster_file="$STACK_DIR/kafka3/cluster-id"
    mkdir -p "$STACK_DIR/kafka3"
    [[ -f "$cluster_file" ]] || java -cp "$cp" kafka.tools.StorageTool random-uuid >"$cluster_file" 2>/dev/null
    for n in 1 2 3; do
        local pidfile="$RUN/kafka3-$n.pid" data="$STACK_DIR/kafka3/data-$n" conf="$STACK_DIR/kafka3/node-$n.properties"
        local port; port="$(kafka3_port "$n")"
        if pid_alive "$pidfile" kafka.Kafka; then continue; fi
        refuse_busy_port "kafka3 node $n" "$port"
        mkdir -p "$data"
        sed -e "s#@NODE_ID@#$n#g" -e "s#@KAFKA_PORT@#$port#g" -e "s#@KAFKA_CONTROLLER_PORT@#$((port + 1))#g" \
            -e "s#@VOTERS@#$voters#g" -e "s#@DATA@#$data#g" "$ROOT/stack/kafka/cluster.properties" >"$conf"
        if [[ ! -f "$data/meta.properties" ]]; then
            java -cp "$cp" kafka.tools.StorageTool format -t "$(cat "$cluster_file")" -c "$conf" \
                >"$LOGS/kafka3-format-$n.log" 2>&1 || die "formatting kafka3 node $n failed; see $LOGS/kafka3-format-$n.log"
        fi
        # shellcheck disable=SC2086
        nohup java $KAFKA3_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.yaml" \
            -cp "$cp" kafka.Kafka "$conf" >"$LOGS/kafka3-$n.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    done
    for n in 1 2 3; do
        local i
        for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
            grep -q "Kafka Server started" "$LOGS/kafka3-$n.log" 2>/dev/null && break
            pid_alive "$RUN/kafka3-$n.pid" kafka.Kafka || die "kafka3 node $n exited during start-up; see $LOGS/kafka3-$n.log"
            sleep 0.25
        done
        grep -q "Kafka Server started" "$LOGS/kafka3-$n.log" || die "kafka3 node $n did not start within ${WAIT_SECONDS}s; see $LOGS/kafka3-$n.log"
    done
    say "kafka3 up: Apache Kafka $(kafka_version), 3 KRaft nodes on 127.0.0.1:$(kafka3_port 1),$(kafka3_port 2),$(kafka3_port 3) (replication factor 3, min.insync.replicas 2)"
}

kafka3_down() {
    # Its data is thrown away (a fresh cluster each time: it only serves the fault harness),
    # so no controlled shutdown, which a node that lost its quorum peers would wait out.
    local n pid
    for n in 1 2 3; do
        if pid_alive "$RUN/kafka3-$n.pid" kafka.Kafka; then
            pid="$(cat "$RUN/kafka3-$n.pid")"; kill -9 "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        rm -f "$RUN/kafka3-$n.pid"
    done
    rm -rf "$STACK_DIR/kafka3"
    say "kafka3 stopped"
}

# ---------------------------------------------------------------- pulsar
pulsar_lite_bin() {
    "$UV" run --no-sync python -c 'from pulsar_lite.binary_finder import find_pulsar_lite_binary as f; print(f())' 2>/dev/null \
        || die "the pulsar-lite package is missing: run 'uv sync' (make dev-up does) first"
}

pulsar_apache_version() { sed -n 's/.*<pulsar.version>\(.*\)<\/pulsar.version>.*/\1/p' "$ROOT/stack/pulsar-apache/pom.xml"; }

pulsar_up() {
    if [[ "$PULSAR_IMPL" == apache ]]; then
        local apid="$STACK_DIR/pulsar-apache.pid"
        if pid_alive "$apid" PulsarStandaloneStarter; then
            say "pulsar already running (pid $(cat "$apid")) on 127.0.0.1:$PULSAR_PORT"; return 0
        fi
        refuse_busy_port pulsar "$PULSAR_PORT"
        refuse_busy_port "pulsar web" "$PULSAR_WEB_PORT"
        refuse_busy_port "pulsar bookie" "$PULSAR_BOOKIE_PORT"
        local secure_env=()
        if [[ "$SECURE" == 1 ]]; then
            secure_pki
            secure_env=(PULSAR_CONF_TEMPLATE="$(secure_pulsar_conf)" PULSAR_WEB_BASE="https://localhost:$PULSAR_WEB_PORT"
                        PULSAR_CA_FILE="$SEC_TLS/ca.pem" PULSAR_ADMIN_TOKEN_FILE="$(pulsar_token admin)")
        fi
        env "${secure_env[@]}" STACK_DIR="$STACK_DIR" PULSAR_LIB_DIR="$CACHE/pulsar-lib" PULSAR_PORT="$PULSAR_PORT" \
            PULSAR_WEB_PORT="$PULSAR_WEB_PORT" PULSAR_BOOKIE_PORT="$PULSAR_BOOKIE_PORT" "$ROOT/stack/pulsar-apache/run.sh" start \
            || die "Apache Pulsar did not start; see $LOGS/pulsar-apache.log (and pulsar-apache-mvn.log)"
        if [[ "$SECURE" == 1 ]]; then secure_pulsar_grants; say "pulsar secured: TLS only, token authentication and authorization"; fi
        say "pulsar up: Apache Pulsar $(pulsar_apache_version) standalone on pulsar://127.0.0.1:$PULSAR_PORT, pid $(cat "$apid")"
        return
    fi
    [[ "$PULSAR_IMPL" == lite ]] || die "PULSAR_IMPL must be 'lite' or 'apache', not '$PULSAR_IMPL'"
    local pidfile="$RUN/pulsar.pid"
    if pid_alive "$pidfile" pulsar-lite; then say "pulsar already running (pid $(cat "$pidfile")) on 127.0.0.1:$PULSAR_PORT"; return 0; fi
    refuse_busy_port pulsar "$PULSAR_PORT"
    local bin; bin="$(pulsar_lite_bin)"
    mkdir -p "$STACK_DIR/pulsar"
    nohup "$bin" --config "$ROOT/stack/pulsar/pulsar-lite.toml" --addr "127.0.0.1:$PULSAR_PORT" \
        --db-path "$STACK_DIR/pulsar/data" >"$LOGS/pulsar.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_port pulsar "$PULSAR_PORT" "$pidfile" "$LOGS/pulsar.log"
    say "pulsar up: pulsar-lite (Pulsar binary protocol) on pulsar://127.0.0.1:$PULSAR_PORT, pid $(cat "$pidfile")"
}

pulsar_down() {
    if [[ -x "$ROOT/stack/pulsar-apache/run.sh" && -f "$STACK_DIR/pulsar-apache.pid" ]]; then
        STACK_DIR="$STACK_DIR" "$ROOT/stack/pulsar-apache/run.sh" stop
    fi
    stop_pidfile pulsar "$RUN/pulsar.pid" pulsar-lite
}

# ---------------------------------------------------------------- postgres
pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do [[ -x "$d/initdb" ]] && { printf '%s' "$d"; return 0; }; done
    return 1
}

pg_install() {
    pg_bindir >/dev/null && return 0
    if [[ "$(id -u)" -ne 0 ]]; then die "PostgreSQL server is missing. Install it: sudo apt-get install -y postgresql"; fi
    say "installing PostgreSQL (Debian package postgresql)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; } \
        >"$LOGS/postgres-install.log" 2>&1 || die "apt-get install postgresql failed; see $LOGS/postgres-install.log"
    # The package creates and starts a cluster of its own on 5432 (and at every boot); ours
    # is the one to use, so stop theirs and keep it from starting again.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        local c
        for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do
            pg_ctlcluster "${c%/*}" "${c#*/}" stop >/dev/null 2>&1 || true
            echo manual >"/etc/postgresql/$c/start.conf" 2>/dev/null || true
        done
    fi
    pg_bindir >/dev/null || die "PostgreSQL installed but no initdb found under /usr/lib/postgresql"
}

as_pg() { # run a command as the postgres user when we are root (the server refuses root)
    # From /: the postgres user may not enter the checkout (a mode-700 temporary clone).
    if [[ "$(id -u)" -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_datadir() {
    # The server runs as 'postgres' when we are root; that user may not be able to reach a
    # checkout under /root, so the cluster then lives in /var/tmp with a link from the stack dir.
    # initdb and pg_ctl get the real path: the link's own path runs through the directories
    # the postgres user cannot enter (a checkout under /root or a mktemp directory).
    local want="$STACK_DIR/postgres"
    if [[ -L "$want" ]]; then readlink -f "$want"; return; fi
    if [[ "$(id -u)" -ne 0 ]]; then printf '%s' "$want"; return; fi
    mkdir -p "$want.probe"; chmod 777 "$want.probe"
    if runuser -u postgres -- test -w "$want.probe"; then rmdir "$want.probe"; printf '%s' "$want"; return; fi
    rmdir "$want.probe"
    local alt; alt="/var/tmp/saga-orchestrator-pg-$(printf '%s' "$STACK_DIR" | md5sum | cut -c1-12)"
    mkdir -p "$alt"; chown postgres "$alt"; ln -sfn "$alt" "$want"
    printf '%s' "$alt"
}

pg_logfile() { # data dir: where the server can write its log (linked from $LOGS when moved)
    if [[ "$1" == "$STACK_DIR/postgres" ]]; then printf '%s' "$LOGS/postgres.log"; return; fi
    ln -sfn "$1/server.log" "$LOGS/postgres.log"
    printf '%s' "$1/server.log"
}

pg_up() {
    local bindir data
    pg_install
    bindir="$(pg_bindir)"
    data="$(pg_datadir)"
    if as_pg "$bindir/pg_ctl" -D "$data/" status >/dev/null 2>&1; then
        say "postgres already running on 127.0.0.1:$PG_PORT"; pg_ensure_db "$bindir"
        if [[ "$SECURE" == 1 ]]; then secure_pg_role "$bindir"; fi
        return 0
    fi
    refuse_busy_port postgres "$PG_PORT"
    if [[ ! -f "$data/PG_VERSION" ]]; then
        mkdir -p "$data"; [[ "$(id -u)" -eq 0 ]] && chown postgres "$data/"
        local pwfile; pwfile="$(mktemp)"; printf '%s\n' "$PG_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
        as_pg "$bindir/initdb" -D "$data/" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" -E UTF8 \
            >"$LOGS/postgres-initdb.log" 2>&1 || { rm -f "$pwfile"; die "initdb failed; see $LOGS/postgres-initdb.log"; }
        rm -f "$pwfile"
    fi
    local log; log="$(pg_logfile "$data")"
    touch "$log"; [[ "$(id -u)" -eq 0 ]] && chown postgres "$log"
    local tls=""
    if [[ "$SECURE" == 1 ]]; then secure_pki; secure_pg_files "$data"; tls="-c ssl=on -c password_encryption=scram-sha-256"; fi
    as_pg "$bindir/pg_ctl" -D "$data/" -l "$log" -w -t "$WAIT_SECONDS" \
        -o "-h 127.0.0.1 -p $PG_PORT -k /tmp -c max_connections=200 -c fsync=on $tls" start >/dev/null \
        || { tail -n 20 "$log" >&2; die "postgres did not start; see $log"; }
    pg_ensure_db "$bindir"
    if [[ "$SECURE" == 1 ]]; then secure_pg_role "$bindir"; say "postgres secured: hostssl and scram-sha-256 only, role $PG_APP_USER"; fi
    say "postgres up: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT, database $PG_DB"
}

pg_ensure_db() {
    local bindir=$1
    if ! PGPASSWORD="$PG_PASSWORD" "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" postgres | grep -q 1; then
        PGPASSWORD="$PG_PASSWORD" "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB" \
            || die "could not create database $PG_DB"
    fi
}

pg_down() {
    local bindir data
    bindir="$(pg_bindir)" || { say "postgres not installed"; return 0; }
    data="$STACK_DIR/postgres"
    if [[ -L "$data" ]]; then data="$(readlink -f "$data")"; fi
    if [[ -f "$data/PG_VERSION" ]] && as_pg "$bindir/pg_ctl" -D "$data/" status >/dev/null 2>&1; then
        as_pg "$bindir/pg_ctl" -D "$data/" -m fast -w stop >/dev/null && say "postgres stopped"
    else
        say "postgres not running"
    fi
}

# ---------------------------------------------------------------- commands
status_line() { # name port pidfile-or-empty
    local name=$1 port=$2 pidfile=$3 state="down"
    if port_open "$port"; then
        state="up"
        if [[ -n "$pidfile" ]] && ! pid_alive "$pidfile"; then state="up (port held by $(port_owner "$port"), not by this stack)"; fi
    fi
    printf '  %-9s %-5s 127.0.0.1:%s\n' "$name" "$state" "$port"
}

cmd_status() {
    say "stack dir $STACK_DIR"
    status_line kafka "$KAFKA_PORT" "$RUN/kafka.pid"
    local ppid="$RUN/pulsar.pid"; [[ -f "$STACK_DIR/pulsar-apache.pid" ]] && ppid="$STACK_DIR/pulsar-apache.pid"
    status_line pulsar "$PULSAR_PORT" "$ppid"
    status_line postgres "$PG_PORT" ""
}

main() {
    local cmd=${1:-status}; shift || true
    local comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || comps=(kafka pulsar postgres)
    mkdir -p "$LOGS" "$RUN" "$CACHE"
    case "$cmd" in
        up) for c in "${comps[@]}"; do case $c in kafka) kafka_up ;; kafka3) kafka3_up ;; pulsar) pulsar_up ;; postgres) pg_up ;; *) die "unknown component $c" ;; esac; done
            if [[ "$SECURE" == 1 ]]; then
                secure_env_files
                say "secured: the worker's settings are in $STACK_DIR/worker.env (make worker SECURE=1 loads them), the participants' in participants.env"
            fi ;;
        down) for c in "${comps[@]}"; do case $c in kafka) kafka_down ;; kafka3) kafka3_down ;; pulsar) pulsar_down ;; postgres) pg_down ;; *) die "unknown component $c" ;; esac; done ;;
        status) cmd_status ;;
        jars)
            kafka_resolve
            STACK_DIR="$STACK_DIR" PULSAR_LIB_DIR="$CACHE/pulsar-lib" "$ROOT/stack/pulsar-apache/run.sh" jars
            say "jars in $(kafka_lib) and $CACHE/pulsar-lib" ;;
        logs) exec tail -n 50 -F "$LOGS"/*.log ;;
        clean)
            main down
            kafka3_down
            rm -rf "$STACK_DIR/kafka" "$STACK_DIR/pulsar" "$STACK_DIR/data/pulsar-apache" "$STACK_DIR/conf" "$LOGS" "$RUN" \
                "$STACK_DIR/workers" "$STACK_DIR/images"
            if [[ -L "$STACK_DIR/postgres" ]]; then rm -rf "$(readlink "$STACK_DIR/postgres")"; fi
            rm -rf "$STACK_DIR/postgres"
            if [[ "$SECURE" == 1 ]]; then rm -rf "$SEC_TLS" "$SEC_SECRETS" "$STACK_DIR"/*.env; fi
            say "local data removed (the jar cache in $CACHE is kept)" ;;
        *) die "usage: stack.sh up|down|status|logs|clean|jars [kafka|pulsar|postgres|kafka3 ...]" ;;
    esac
}

main "$@"
