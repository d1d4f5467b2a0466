#!/usr/bin/env bash
# The README's test command: installs what is missing, starts the real local servers (Kafka,
# Redis, Prometheus, the RTSP server), runs ruff, mypy and pytest, and stops the servers it started.
# Extra arguments go to pytest (e.g. -k kafka).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$here/install.sh" all

started=()
for server in kafka redis prometheus rtsp; do
  bash "$here/infra.sh" status "$server" | grep -q running || started+=("$server")
done
stop_started() { [ ${#started[@]} -eq 0 ] || bash "$here/infra.sh" stop "${started[@]}"; }
trap stop_started EXIT
bash "$here/infra.sh" start

cd "$FACESTREAM_ROOT"
"$FACESTREAM_VENV/bin/ruff" check .
"$FACESTREAM_VENV/bin/ruff" format --check .
"$FACESTREAM_VENV/bin/mypy"  # shared/ and services/, configured in pyproject.toml
# Servers must be there: a test that cannot reach one fails instead of skipping.
FACESTREAM_REQUIRE_SERVERS=1 "$FACESTREAM_VENV/bin/python" -m pytest "$@"
