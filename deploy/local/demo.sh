#!/usr/bin/env bash
# The README's main job: installs the Python package if needed, then runs every service in one
# process on the in-memory bus over the sample video (or the sources given: files, rtsp:// URLs,
# device indexes). With no arguments, the people in ../shared/data/faces/people/enroll are
# enrolled (one photo each is enough) into a gallery for this run, so the events name them.
# Extra arguments go to `facestream run`. The web console is served too (its URL is printed): with
# FACESTREAM_API__TOKEN if set, else local-only on 127.0.0.1 with a token made for the run; the
# sample video then plays in a loop for FACESTREAM_DEMO_SECONDS (default 180; time to look at the
# console), after which the run stops and prints its summary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$here/install.sh" python
people="$FACESTREAM_SHARED_DATA/faces/people/enroll"
if [ -z "${FACESTREAM_API__TOKEN:-}" ]; then export FACESTREAM_CONSOLE__LOCAL_ONLY="${FACESTREAM_CONSOLE__LOCAL_ONLY:-1}"; fi
if [ $# -eq 0 ] && [ -d "$people" ]; then set -- --enroll "$people" --loop --seconds "${FACESTREAM_DEMO_SECONDS:-180}"; fi
exec "$FACESTREAM_VENV/bin/facestream" run "$@"
