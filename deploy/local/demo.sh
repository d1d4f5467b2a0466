#!/usr/bin/env bash
# The README's main job: installs the Python package if needed, then runs every service in one
# process on the in-memory bus over the sample video (or the sources given: files, rtsp:// URLs,
# device indexes). Extra arguments go to `facestream run`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$here/install.sh" python
exec "$FACESTREAM_VENV/bin/facestream" run "$@"
