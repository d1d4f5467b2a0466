#!/usr/bin/env bash
# The README's main job: installs the Python package if needed, then runs every service in one
# process on the in-memory bus over the sample video (or the sources given: files, rtsp:// URLs,
# device indexes). With no arguments, the people in ../shared/data/faces/people/enroll are
# enrolled (one photo each is enough) into a gallery for this run, so the events name them.
# Extra arguments go to `facestream run`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$here/install.sh" python
people="$FACESTREAM_SHARED_DATA/faces/people/enroll"
if [ $# -eq 0 ] && [ -d "$people" ]; then set -- --enroll "$people"; fi
exec "$FACESTREAM_VENV/bin/facestream" run "$@"
