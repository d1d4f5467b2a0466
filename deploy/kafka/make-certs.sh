#!/usr/bin/env bash
# make-certs.sh DIR [HOST ...]: a private CA and a broker certificate for Kafka's SASL_SSL
# listener, as PEM files Kafka reads directly (ssl.keystore.type=PEM):
#   DIR/ca.pem     the CA certificate: clients trust it (FACESTREAM_KAFKA__SSL_CAFILE)
#   DIR/kafka.pem  the broker's unencrypted PKCS#8 key and certificate, for HOSTs (default: kafka)
#   DIR/ca.key     the CA's key: keep it offline; it signs further broker certificates
# For docker-compose: bash deploy/kafka/make-certs.sh deploy/compose/certs kafka localhost
set -euo pipefail
dir="${1:?usage: make-certs.sh DIR [HOST ...]}"; shift
hosts=("$@"); [ ${#hosts[@]} -gt 0 ] || hosts=(kafka)
mkdir -p "$dir"
san=""
for host in "${hosts[@]}"; do
  if [[ "$host" =~ ^[0-9.]+$ ]]; then san+="IP:$host,"; else san+="DNS:$host,"; fi
done
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
(
  umask 077
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=facestream-kafka-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=${hosts[0]}" \
    -keyout "$work/broker.key" -out "$work/broker.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "${san%,}" > "$work/ext"
  openssl x509 -req -in "$work/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 825 -extfile "$work/ext" \
    -out "$work/broker.crt" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$work/broker.key" -out "$work/broker.pk8"
  cat "$work/broker.pk8" "$work/broker.crt" > "$dir/kafka.pem"
)
# The broker runs as another user in its container; the key file is mounted read-only there.
chmod 644 "$dir/ca.pem" "$dir/kafka.pem"
echo "wrote $dir/ca.pem and $dir/kafka.pem for ${hosts[*]}"
