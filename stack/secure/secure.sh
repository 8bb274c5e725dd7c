# shellcheck shell=bash
# The secured local stack (`make dev-up SECURE=1`), sourced by stack/stack.sh when SECURE=1.
# Same components, same ports, its own data under $STACK_DIR (stack.sh points it at
# .stack/secure; the jar cache stays shared):
#   tls/        a local CA and one server certificate (SAN localhost, 127.0.0.1), openssl
#   secrets/    generated passwords, the Pulsar token key and tokens (mode 600)
#   worker.env, participants.env, admin.env   what a client needs, as KEY='value' lines
#               (`set -a; . worker.env; set +a`); `make worker SECURE=1` loads worker.env
# Kafka: client listener SASL_SSL only, SCRAM-SHA-512 only, StandardAuthorizer with no
#   access without an ACL; the controller listener is TLS with a client certificate.
#   User:saga-orchestrator may do everything on topics and groups whose name starts with
#   `saga-orchestrator` (the default APP_ID) and nothing else.
# Pulsar: TLS only (pulsar+ssl:// and https), token authentication and authorization;
#   roles saga-orchestrator and participants may produce and consume on public/default.
# PostgreSQL: hostssl + scram-sha-256 only; role `saga` owns the database.

SEC_TLS="$STACK_DIR/tls"
SEC_SECRETS="$STACK_DIR/secrets"
KAFKA_WORKER_USER="${KAFKA_WORKER_USER:-saga-orchestrator}"
PG_APP_USER="${PG_APP_USER:-saga}"

secret() { # name: a generated secret, made once, kept in secrets/
    local f="$SEC_SECRETS/$1"
    [[ -s "$f" ]] || (umask 077; openssl rand -hex 24 >"$f")
    cat "$f"
}

secure_pki() {
    command -v openssl >/dev/null 2>&1 || die "openssl is missing: the secure stack makes its certificates with it (apt-get install -y openssl)"
    mkdir -p "$SEC_TLS" "$SEC_SECRETS"; chmod 700 "$SEC_SECRETS"
    [[ -s "$SEC_TLS/server.pem" && -s "$SEC_TLS/kafka.p12" ]] && return 0
    say "making a local CA and the servers' certificate in $SEC_TLS"
    (
        cd "$SEC_TLS"; umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 825 \
            -subj "/CN=saga-orchestrator local CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=saga-stack-server" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 825 \
            -extfile server.ext 2>/dev/null
        openssl pkcs12 -export -in server.pem -inkey server.key -name server -out kafka.p12 \
            -passout "pass:$(secret keystore-password)"
        rm -f server.csr server.ext
        chmod 644 ca.pem server.pem
    ) || die "openssl could not make the certificates in $SEC_TLS"
}

# ---------------------------------------------------------------- kafka
secure_kafka_conf() { # conf data
    local conf=$1 data=$2
    cat >"$conf" <<EOF
# The secured local Kafka (stack/secure/secure.sh writes this file).
process.roles=broker,controller
node.id=1
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://localhost:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret kafka-admin-password)";
ssl.keystore.type=PKCS12
ssl.keystore.location=$SEC_TLS/kafka.p12
ssl.keystore.password=$(secret keystore-password)
ssl.truststore.type=PEM
ssl.truststore.location=$SEC_TLS/ca.pem
# The controller listener takes only the stack's own certificate (the broker speaking to its
# controller); its subject's CN is the principal.
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:saga-stack-server
log.dirs=$data
num.partitions=8
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
    chmod 600 "$conf"
}

secure_kafka_format_args() {
    printf '%s\n' --add-scram "SCRAM-SHA-512=[name=admin,password=$(secret kafka-admin-password)]" \
        --add-scram "SCRAM-SHA-512=[name=$KAFKA_WORKER_USER,password=$(secret kafka-worker-password)]"
}

secure_kafka_admin_properties() {
    local f="$SEC_SECRETS/kafka-admin.properties"
    cat >"$f" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret kafka-admin-password)";
ssl.truststore.type=PEM
ssl.truststore.location=$SEC_TLS/ca.pem
EOF
    chmod 600 "$f"; printf '%s' "$f"
}

kafka_tools_resolve() { # Kafka's command-line tools jar (AclCommand), beside Kafka's own
    local lib="$CACHE/kafka-tools-lib"
    if [[ -f "$lib/.complete" ]]; then return 0; fi
    say "resolving Kafka's tools jar from Maven Central (first secured run only)"
    rm -rf "$lib"
    mvn -q -B -f "$ROOT/stack/secure/pom.xml" dependency:copy-dependencies -DoutputDirectory="$lib" \
        -DincludeScope=runtime >"$LOGS/kafka-tools-resolve.log" 2>&1 \
        || die "Maven could not resolve kafka-tools; see $LOGS/kafka-tools-resolve.log"
    touch "$lib/.complete"
}

secure_kafka_acls() { # classpath: the worker's principal gets its own topics and group, nothing else
    kafka_tools_resolve
    local cp="$1:$CACHE/kafka-tools-lib/*" props; props="$(secure_kafka_admin_properties)"
    java -cp "$cp" org.apache.kafka.tools.AclCommand --bootstrap-server "localhost:$KAFKA_PORT" \
        --command-config "$props" --add --allow-principal "User:$KAFKA_WORKER_USER" --operation All \
        --topic saga-orchestrator --group saga-orchestrator --resource-pattern-type prefixed \
        >"$LOGS/kafka-acls.log" 2>&1 || die "granting Kafka ACLs failed; see $LOGS/kafka-acls.log"
}

# ---------------------------------------------------------------- pulsar
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

pulsar_token() { # role: an HS256 JWT signed with the broker's secret key (no expiry)
    local role=$1 f="$SEC_SECRETS/pulsar-$1.token"
    if [[ ! -s "$f" ]]; then
        local header payload sig
        header="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)"
        payload="$(printf '{"sub":"%s"}' "$role" | b64url)"
        sig="$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -mac HMAC \
            -macopt "hexkey:$(od -An -tx1 -v "$SEC_SECRETS/pulsar-token-secret.key" | tr -d ' \n')" -binary | b64url)"
        (umask 077; printf '%s.%s.%s' "$header" "$payload" "$sig" >"$f")
    fi
    printf '%s' "$f"
}

secure_pulsar_conf() { # template path: standalone.conf with TLS, tokens and authorization on
    [[ -s "$SEC_SECRETS/pulsar-token-secret.key" ]] || (umask 077; openssl rand 32 >"$SEC_SECRETS/pulsar-token-secret.key")
    local admin_token; admin_token="$(pulsar_token admin)"
    pulsar_token "$KAFKA_WORKER_USER" >/dev/null
    pulsar_token participants >/dev/null
    local out="$STACK_DIR/conf/pulsar-secure.template"
    mkdir -p "$STACK_DIR/conf"
    sed -e 's/^brokerServicePort=.*/brokerServicePort=/' -e 's/^webServicePort=.*/webServicePort=/' \
        -e '/^authenticationEnabled=/d' -e '/^authorizationEnabled=/d' \
        "$ROOT/stack/pulsar-apache/standalone.conf" >"$out"
    cat >>"$out" <<EOF

# ---- secured (stack/secure/secure.sh): TLS only, tokens, authorization
brokerServicePortTls=@PULSAR_PORT@
webServicePortTls=@PULSAR_WEB_PORT@
tlsCertificateFilePath=$SEC_TLS/server.pem
tlsKeyFilePath=$SEC_TLS/server.key
tlsTrustCertsFilePath=$SEC_TLS/ca.pem
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=file://$SEC_SECRETS/pulsar-token-secret.key
authorizationEnabled=true
superUserRoles=admin
brokerClientTlsEnabled=true
brokerClientTrustCertsFilePath=$SEC_TLS/ca.pem
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=file://$admin_token
EOF
    printf '%s' "$out"
}

secure_pulsar_grants() {
    local role admin; admin="$(cat "$(pulsar_token admin)")"
    for role in "$KAFKA_WORKER_USER" participants; do
        curl -fsS -m 10 --cacert "$SEC_TLS/ca.pem" -H "Authorization: Bearer $admin" \
            -H 'Content-Type: application/json' -X POST -d '["produce","consume"]' \
            "https://localhost:$PULSAR_WEB_PORT/admin/v2/namespaces/public/default/permissions/$role" \
            >>"$LOGS/pulsar-grants.log" 2>&1 || die "granting Pulsar role $role failed; see $LOGS/pulsar-grants.log"
    done
}

# ---------------------------------------------------------------- postgres
secure_pg_files() { # datadir: TLS key and pg_hba for hostssl + scram only
    local data=$1
    cp "$SEC_TLS/server.pem" "$data/server.crt"; cp "$SEC_TLS/server.key" "$data/server.key"
    chmod 600 "$data/server.key"; [[ "$(id -u)" -eq 0 ]] && chown postgres "$data/server.crt" "$data/server.key"
    cat >"$data/pg_hba.conf" <<EOF
# The secured local stack: TLS and scram passwords only (stack/secure/secure.sh).
local   all  all                 scram-sha-256
hostssl all  all  127.0.0.1/32   scram-sha-256
hostssl all  all  ::1/128        scram-sha-256
EOF
    [[ "$(id -u)" -eq 0 ]] && chown postgres "$data/pg_hba.conf"
    return 0
}

secure_pg_role() { # bindir: role $PG_APP_USER owning $PG_DB
    local bindir=$1 pw; pw="$(secret postgres-app-password)"
    PGSSLMODE=require PGPASSWORD="$PG_PASSWORD" "$bindir/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null <<EOF || die "creating PostgreSQL role $PG_APP_USER failed"
SELECT format('CREATE ROLE %I LOGIN', '$PG_APP_USER') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_APP_USER')\gexec
ALTER ROLE "$PG_APP_USER" PASSWORD '$pw';
ALTER DATABASE "$PG_DB" OWNER TO "$PG_APP_USER";
EOF
}

# ---------------------------------------------------------------- env files
env_line() { printf "%s='%s'\n" "$1" "$2"; }

secure_env_files() {
    local ca="$SEC_TLS/ca.pem"
    (umask 077; printf '%s' "$(secret kafka-worker-password)" >"$SEC_SECRETS/kafka-worker.password"
     printf '%s' "$(secret postgres-app-password)" >"$SEC_SECRETS/postgres-app.password")
    {
        echo "# The worker's settings on the secured local stack (make worker SECURE=1 loads them)."
        env_line KAFKA_BROKER_URL "kafka://localhost:$KAFKA_PORT"
        env_line KAFKA_SECURITY_PROTOCOL SASL_SSL
        env_line KAFKA_SASL_MECHANISM SCRAM-SHA-512
        env_line KAFKA_SASL_USERNAME "$KAFKA_WORKER_USER"
        env_line KAFKA_SASL_PASSWORD_FILE "$SEC_SECRETS/kafka-worker.password"
        env_line KAFKA_SSL_CAFILE "$ca"
        env_line BROKER_URL "pulsar+ssl://localhost:$PULSAR_PORT"
        env_line PULSAR_TLS_TRUST_CERTS_FILE "$ca"
        env_line PULSAR_AUTH_TOKEN_FILE "$SEC_SECRETS/pulsar-$KAFKA_WORKER_USER.token"
        env_line DATABASE_URL "postgresql://$PG_APP_USER@localhost:$PG_PORT/$PG_DB?sslmode=verify-full&sslrootcert=$ca"
        env_line DATABASE_PASSWORD_FILE "$SEC_SECRETS/postgres-app.password"
    } >"$STACK_DIR/worker.env"
    {
        echo "# The participant simulators' settings on the secured local stack."
        env_line BROKER_URL "pulsar+ssl://localhost:$PULSAR_PORT"
        env_line PULSAR_TLS_TRUST_CERTS_FILE "$ca"
        env_line PULSAR_AUTH_TOKEN_FILE "$SEC_SECRETS/pulsar-participants.token"
    } >"$STACK_DIR/participants.env"
    {
        echo "# Administrators' credentials on the secured local stack (Kafka admin.properties, Pulsar super-user token)."
        env_line KAFKA_ADMIN_PROPERTIES "$SEC_SECRETS/kafka-admin.properties"
        env_line PULSAR_ADMIN_TOKEN_FILE "$SEC_SECRETS/pulsar-admin.token"
        env_line PULSAR_ADMIN_URL "https://localhost:$PULSAR_WEB_PORT"
        env_line PGPASSWORD "$PG_PASSWORD"
        env_line CA_FILE "$ca"
    } >"$STACK_DIR/admin.env"
    chmod 600 "$STACK_DIR/worker.env" "$STACK_DIR/participants.env" "$STACK_DIR/admin.env"
    secure_kafka_admin_properties >/dev/null
}
