#!/usr/bin/env bash
# Starts and stops the real servers the tests and a local deployment use, as plain processes on
# loopback, each with its data and log under $FACESTREAM_RUN_DIR. Idempotent.
#   infra.sh start|stop|restart|status [kafka] [redis] [prometheus] [rtsp]   (default: all four)
# Install them first with install.sh servers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUN="$FACESTREAM_RUN_DIR"
mkdir -p "$RUN"

log() { echo "[infra] $*"; }
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
running() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # name port seconds
  for _ in $(seq $(( $3 * 10 ))); do
    port_open "$2" && return 0
    running "$1" || { log "$1 exited; see $RUN/$1.log"; tail -20 "$RUN/$1.log" >&2; return 1; }
    sleep 0.1
  done
  log "$1 did not open port $2 within $3 s"; return 1
}

launch() {  # name port command...
  local name="$1" port="$2"; shift 2
  if running "$name"; then log "$name already running (pid $(pid_of "$name"))"; return; fi
  if port_open "$port"; then log "port $port is taken by another process; set another port"; return 1; fi
  nohup "$@" >>"$RUN/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
  wait_port "$name" "$port" 60
  log "$name up on 127.0.0.1:$port (pid $(pid_of "$name"))"
}

start_kafka() {
  local dir="$RUN/kafka" port="$FACESTREAM_LOCAL_KAFKA_PORT" ctl="$FACESTREAM_LOCAL_KAFKA_CONTROLLER_PORT"
  [ -d "$KAFKA_HOME/libs" ] || { log "Kafka is not installed: run deploy/local/install.sh servers"; return 1; }
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
log.retention.hours=2
PROPS
  local java=(java "-Xms${FACESTREAM_LOCAL_KAFKA_HEAP}" "-Xmx${FACESTREAM_LOCAL_KAFKA_HEAP}"
    -XX:+UseG1GC -Dkafka.logs.dir="$dir"
    -Dlog4j.configuration="file:$FACESTREAM_ROOT/deploy/local/kafka/log4j.properties"
    -cp "$KAFKA_HOME/libs/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster; cluster="$(python3 -c 'import base64,uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" >>"$RUN/kafka.log" 2>&1
  fi
  launch kafka "$port" "${java[@]}" kafka.Kafka "$dir/server.properties"
}

start_redis() {
  mkdir -p "$RUN/redis"
  launch redis "$FACESTREAM_LOCAL_REDIS_PORT" redis-server --bind 127.0.0.1 \
    --port "$FACESTREAM_LOCAL_REDIS_PORT" --requirepass "$FACESTREAM_LOCAL_REDIS_PASSWORD" \
    --dir "$RUN/redis" --appendonly yes --save "" --daemonize no
}

start_prometheus() {
  # Scrape targets come from a file the tests (or you) write: $RUN/prometheus/targets.json.
  local dir="$RUN/prometheus"
  mkdir -p "$dir/data"
  [ -f "$dir/targets.json" ] || echo '[]' > "$dir/targets.json"
  cat > "$dir/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: facestream
    file_sd_configs:
      - files: ["$dir/targets.json"]
        refresh_interval: 1s
YML
  launch prometheus "$FACESTREAM_LOCAL_PROMETHEUS_PORT" prometheus \
    --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$FACESTREAM_LOCAL_PROMETHEUS_PORT"
}

start_rtsp() {
  local video="$FACESTREAM_LOCAL_RTSP_VIDEO" loop="$RUN/rtsp/loop.mp4"
  [ -f "$video" ] || { log "no video to serve at $video; RTSP server not started"; return 0; }
  # A camera that never ends: the clip concatenated 60 times, stream-copied (no re-encoding),
  # so timestamps run on across the joins, which GStreamer's demuxer needs.
  mkdir -p "$RUN/rtsp"
  if [ ! -f "$loop" ] || [ "$video" -nt "$loop" ]; then
    ffmpeg -v error -y -stream_loop 59 -i "$video" -map 0:v:0 -c copy "$loop.tmp.mp4" && mv "$loop.tmp.mp4" "$loop"
  fi
  # The liveness pair (/live, /replay) is VP8; the server re-payloads H.264 only, so encode once.
  local mounts=(--mount "/cam=$video" --mount "/loop=$loop") name clip
  for name in live replay; do
    clip="$FACESTREAM_SHARED_DATA/liveness/$([ "$name" = live ] && echo live_person.mov || echo replay_attack_same_person.mp4)"
    [ -f "$clip" ] || continue
    if [ ! -f "$RUN/rtsp/$name.mp4" ]; then
      ffmpeg -v error -y -i "$clip" -map 0:v:0 -c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p \
        -g 15 "$RUN/rtsp/$name.tmp.mp4" && mv "$RUN/rtsp/$name.tmp.mp4" "$RUN/rtsp/$name.mp4"
    fi
    mounts+=(--mount "/$name=$RUN/rtsp/$name.mp4")
  done
  launch rtsp "$FACESTREAM_LOCAL_RTSP_PORT" /usr/bin/python3 "$FACESTREAM_ROOT/deploy/local/rtsp_server.py" \
    "${mounts[@]}" --host 127.0.0.1 --port "$FACESTREAM_LOCAL_RTSP_PORT"
}

stop_one() {
  local name="$1" pid; pid="$(pid_of "$name")"
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then rm -f "$RUN/$name.pid"; return; fi
  kill -CONT "$pid" 2>/dev/null || true  # a test may have paused it
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 30 s; killing"; kill -KILL "$pid"; }
  rm -f "$RUN/$name.pid"
  log "$name stopped"
}

status_one() {
  if running "$1"; then echo "$1: running (pid $(pid_of "$1"))"; else echo "$1: stopped"; fi
}

action="${1:-status}"; shift || true
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(kafka redis prometheus rtsp)
case "$action" in
  start) for n in "${names[@]}"; do "start_$n"; done ;;
  stop) for n in "${names[@]}"; do stop_one "$n"; done ;;
  restart) for n in "${names[@]}"; do stop_one "$n"; "start_$n"; done ;;
  status) for n in "${names[@]}"; do status_one "$n"; done ;;
  *) echo "usage: $0 start|stop|restart|status [kafka redis prometheus rtsp]"; exit 2 ;;
esac
