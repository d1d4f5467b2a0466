#!/usr/bin/env bash
# A single-node KRaft Kafka whose only reachable listener is SASL_SSL with SCRAM-SHA-512 and
# whose authorizer denies whatever deploy/kafka/acls.tsv does not allow (docker-compose's Kafka;
# tests/test_kafka_security.py runs it on loopback with the local jars).
#
# Required: KAFKA_ADMIN_PASSWORD (the broker's own and the setup job's user, "admin");
# FACESTREAM_KAFKA_<SERVICE>_PASSWORD create those users at the first start.
# Optional: KAFKA_HOME (/opt/kafka), KAFKA_DATA (/var/lib/kafka/data), KAFKA_CERTS
# (/etc/kafka/certs: ca.pem, kafka.pem from make-certs.sh), KAFKA_PORT (9092),
# KAFKA_CONTROLLER_PORT (9093), KAFKA_ADVERTISED_HOST (kafka), CLUSTER_ID, KAFKA_HEAP_OPTS.
set -euo pipefail
: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}"
home="${KAFKA_HOME:-/opt/kafka}"; data="${KAFKA_DATA:-/var/lib/kafka/data}"
certs="${KAFKA_CERTS:-/etc/kafka/certs}"; port="${KAFKA_PORT:-9092}"
ctl="${KAFKA_CONTROLLER_PORT:-9093}"; host="${KAFKA_ADVERTISED_HOST:-kafka}"
cluster="${CLUSTER_ID:-ZmFjZXN0cmVhbS1rcmFmdA}"
for file in ca.pem kafka.pem; do
  [ -r "$certs/$file" ] || { echo "no $certs/$file: run deploy/kafka/make-certs.sh" >&2; exit 2; }
done
config="$(mktemp -d)/server.properties"
umask 077
cat > "$config" <<PROPS
process.roles=broker,controller
node.id=1
# The controller listener is plaintext but bound to loopback: only this process reaches it.
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=SASL_SSL://:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=SASL_SSL://$host:$port
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.location=$certs/kafka.pem
ssl.truststore.type=PEM
ssl.truststore.location=$certs/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# admin: the broker itself and the setup job; ANONYMOUS: the loopback controller listener only.
super.users=User:admin;User:ANONYMOUS
log.dirs=$data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
# A ceiling for any topic; facestream's own get hours (facestream topics create).
log.retention.hours=24
PROPS
# A client configuration for the admin user (the container's healthcheck uses it).
cat > "${KAFKA_CLIENT_PROPERTIES:-$(dirname "$config")/admin.properties}" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$certs/ca.pem
PROPS
java_cmd=(java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} ${KAFKA_LOG4J_OPTS:-} -cp "$home/libs/*")
if [ ! -f "$data/meta.properties" ]; then
  # First start: the admin and every service whose FACESTREAM_KAFKA_<SERVICE>_PASSWORD is set get
  # their SCRAM credentials now (setup.sh updates them later, and creates the ACLs).
  scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]")
  for service in ingestor detector liveness recognizer stylizer subscriber; do
    var="FACESTREAM_KAFKA_${service^^}_PASSWORD"
    [ -n "${!var:-}" ] && scram+=(--add-scram "SCRAM-SHA-512=[name=facestream-$service,password=${!var}]")
  done
  mkdir -p "$data"
  "${java_cmd[@]}" kafka.tools.StorageTool format -t "$cluster" -c "$config" "${scram[@]}"
fi
exec "${java_cmd[@]}" kafka.Kafka "$config"
