#!/usr/bin/env bash
# The second half of `make retrain`, once the new labels are pulled, fitted and quantized: fetch the bundle
# live on HOST, compare the new bundle with it on the same held-out images, write the run's report, and
# deploy the new bundle only when it is not worse by more than MARGIN accuracy points.
#   make retrain HOST=pi@garage.local DATA=data/garage RUN=runs/garage-2 BUNDLE=bundles/garage-2
#   deploy/retrain.sh HOST RUN_DIR BUNDLE_DIR DATA_DIR
# MARGIN (default 2), TRAIN (the edgesight-train command), and STATE, SSH, RELOAD, REMOTE_EDGESIGHT, REMOTE_CONFIG as deploy.sh
# reads them. Exit 0: deployed; 1: refused (the live bundle stays); other: could not compare or deploy.
set -euo pipefail

usage() { echo "usage: retrain.sh HOST RUN_DIR BUNDLE_DIR DATA_DIR   (example: retrain.sh pi@garage.local runs/g bundles/g data/g)"; }
[ $# -eq 4 ] || { usage >&2; exit 64; }
HOST=$1
RUN=${2%/}
BUNDLE=${3%/}
DATA=${4%/}
MARGIN=${MARGIN:-2}
TRAIN=${TRAIN:-edgesight-train}
STATE=${STATE:-/var/lib/edgesight}
SSH=${SSH:-ssh}
. "$(dirname "$0")/device.sh"

say() { printf 'retrain: %s\n' "$*" >&2; }
live="$RUN/live-bundle"
rm -rf "$live"
if on_device "test -f '$STATE/bundles/current/manifest.json'"; then
  mkdir -p "$live"
  on_device "tar -C '$STATE/bundles/current/' -cf - ." | tar -C "$live" -xf -
  say "fetched the bundle live on $HOST into $live"
  current=$live
else
  say "no bundle is live on $HOST yet"
  current=none
fi

verdict=0
$TRAIN compare "$BUNDLE" "$current" "$DATA" --margin "$MARGIN" --out "$RUN/compare.json" || verdict=$?
[ $verdict -le 1 ] || exit $verdict
$TRAIN evaluate "$RUN" --bundle "$BUNDLE" --log-level warning  # the run's report, the comparison included
if [ $verdict -eq 1 ]; then
  say "not deployed: $BUNDLE is worse than the live bundle by more than $MARGIN points; $HOST keeps it"
  exit 1
fi
exec bash "$(dirname "$0")/deploy.sh" "$HOST" "$BUNDLE"
