#!/usr/bin/env bash
# Creates (or updates) each service's SCRAM user and its ACLs from deploy/kafka/acls.tsv, as the
# admin user; idempotent, so it runs on every `docker-compose up` and after a password change.
#
# Required: KAFKA_ADMIN_PASSWORD and FACESTREAM_KAFKA_<SERVICE>_PASSWORD for every service in
# acls.tsv (INGESTOR, DETECTOR, LIVENESS, RECOGNIZER, STYLIZER; SUBSCRIBER is optional: without
# it that user is not created). Optional: KAFKA_HOME (/opt/kafka), KAFKA_BOOTSTRAP (kafka:9092),
# KAFKA_CERTS (/etc/kafka/certs), KAFKA_ACLS (this folder's acls.tsv).
set -euo pipefail
: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}"
here="$(cd "$(dirname "$0")" && pwd)"
home="${KAFKA_HOME:-/opt/kafka}"; bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
certs="${KAFKA_CERTS:-/etc/kafka/certs}"; acls="${KAFKA_ACLS:-$here/acls.tsv}"
client="$(mktemp -d)/admin.properties"
umask 077
cat > "$client" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$certs/ca.pem
PROPS
kafka() { java -Xmx256m ${KAFKA_LOG4J_OPTS:-} -cp "$home/libs/*" "$@" --bootstrap-server "$bootstrap" --command-config "$client"; }

for principal in $(grep -v '^#' "$acls" | cut -f1 | sort -u); do
  service="${principal#facestream-}"
  var="FACESTREAM_KAFKA_${service^^}_PASSWORD"
  password="${!var:-}"
  if [ -z "$password" ]; then
    [ "$service" = subscriber ] && { echo "no $var: user $principal not created"; continue; }
    echo "set $var" >&2; exit 2
  fi
  kafka kafka.admin.ConfigCommand --alter --entity-type users --entity-name "$principal" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" >/dev/null
  # One AclCommand per operation (a JVM start each): every resource of that operation at once.
  for operation in $(grep "^$principal	" "$acls" | cut -f2 | sort -u); do
    resources=()
    while IFS=$'\t' read -r _ _ type name; do
      resources+=("--$type" "$name")
    done < <(grep "^$principal	$operation	" "$acls")
    kafka kafka.admin.AclCommand --add --allow-principal "User:$principal" \
      --operation "$operation" "${resources[@]}" >/dev/null
  done
  echo "user $principal: $(grep -c "^$principal	" "$acls") ACLs"
done
