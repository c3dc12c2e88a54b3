#!/usr/bin/env bash
# Push a bundle to a device and switch to it; switch back by itself if the daemon does not come up with it.
#   make deploy HOST=pi@raspberrypi.local BUNDLE=bundles/photos
#   deploy/deploy.sh HOST BUNDLE_DIR
# HOST=local acts on this machine (STATE, RELOAD, REMOTE_EDGESIGHT and REMOTE_CONFIG may then point at a
# test layout). SSH overrides the ssh command, e.g. SSH="ssh -p 2222 -i key" for a Pi behind a port forward.
# Steps: copy to bundles/<version>/ (staged, then renamed), switch the `current` symlink atomically,
# reload the daemon (SIGHUP: it verifies the bundle in a child before using it), wait until the daemon
# reports the new version (`edgesight status` on the device, as root there: it asks the daemon with the
# address and bearer token of its config), otherwise (the daemon reports it refused the bundle, or the
# wait runs out) relink the previous bundle and reload again. Exit 0 only when the new version is live.
set -euo pipefail

usage() { echo "usage: deploy.sh HOST BUNDLE_DIR   (example: deploy.sh pi@raspberrypi.local bundles/photos)"; }
[ $# -eq 2 ] || { usage >&2; exit 64; }
HOST=$1
BUNDLE=${2%/}
STATE=${STATE:-/var/lib/edgesight}
REMOTE_EDGESIGHT=${REMOTE_EDGESIGHT:-/opt/edgesight/venv/bin/edgesight}
REMOTE_CONFIG=${REMOTE_CONFIG:-/etc/edgesight/edgesight.toml}
RELOAD=${RELOAD:-systemctl reload edgesight.service}
WAIT_SECONDS=${WAIT_SECONDS:-120}
OWNER=${OWNER:-edgesight:edgesight}
SSH=${SSH:-ssh}

say() { printf 'deploy: %s\n' "$*" >&2; }
[ -f "$BUNDLE/manifest.json" ] || { say "$BUNDLE: not a bundle (no manifest.json); build one with make quantize"; exit 66; }
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$BUNDLE/manifest.json")
case $version in ''|*/*|.*) say "$BUNDLE/manifest.json: unusable version '$version'"; exit 65;; esac

. "$(dirname "$0")/device.sh"

status="$(printf '%q' "$REMOTE_EDGESIGHT") status --json --config $(printf '%q' "$REMOTE_CONFIG")"

# The live version, the time of the daemon's last reload and its outcome ("ok" or "refused: why"),
# tab-separated, "-" for what the daemon has not reported; empty when the daemon does not answer.
live_state() {
  { on_device "$status 2>/dev/null" || true; } | python3 -c 'import json, sys
try:
    status = json.loads(sys.stdin.readline())
except ValueError:
    sys.exit()
reload = status.get("reload") or {}
outcome = "ok" if reload.get("ok", True) else "refused: " + reload.get("message", "")
print((status.get("model") or {}).get("version") or "-", reload.get("ts", "-"), outcome, sep="\t")'
}

# A config that gives no way to ask the daemon (no [http], an unreadable or wrong token) would only show
# after the wait: say so before switching anything. A daemon that does not answer now may be restarting.
code=0
on_device "$status >/dev/null" || code=$?
if [ "$code" != 0 ] && [ "$code" != 69 ]; then  # 69: unhealthy or not answering; 78: config; 127: not there
  say "cannot ask the daemon on $HOST how it is (above: $REMOTE_EDGESIGHT status --config $REMOTE_CONFIG); nothing was changed"
  if [ "$code" = 78 ]; then exit 78; else exit 69; fi
fi

bundles="$STATE/bundles"
previous=$(on_device "readlink '$bundles/current' || true")
say "copying $BUNDLE to $HOST:$bundles/$version (previous: ${previous:-none})"
tar -C "$BUNDLE" -cf - . | on_device "
  set -e
  staging=\$(mktemp -d '$bundles/.incoming-XXXXXX')
  tar -C \"\$staging\" -xf -
  chmod 0750 \"\$staging\"
  if [ '$HOST' != local ]; then chown -R '$OWNER' \"\$staging\"; fi
  rm -rf '$bundles/$version'
  mv -T \"\$staging\" '$bundles/$version'"

switch_to() {  # atomic: a new symlink renamed over the old one
  on_device "ln -sfn '$1' '$bundles/.current.new' && mv -T '$bundles/.current.new' '$bundles/current' && $RELOAD"
}

before=$(live_state | cut -f2)  # the time of the last reload before ours, to tell ours when it is reported
switch_to "$version"
say "switched to $version; waiting up to ${WAIT_SECONDS}s for the daemon to report it"
deadline=$((SECONDS + WAIT_SECONDS))
while [ $SECONDS -lt $deadline ]; do
  IFS=$'\t' read -r live reloaded outcome <<<"$(live_state)" || true
  if [ "$live" = "$version" ]; then
    say "$version is live on $HOST"
    exit 0
  fi
  if [ "$reloaded" != "$before" ] && [ "${outcome%%:*}" = refused ]; then
    say "the daemon refused $version (${outcome#refused: })"
    break
  fi
  sleep 1
done

say "$version did not come up on $HOST; switching back to ${previous:-nothing}"
if [ -n "$previous" ]; then switch_to "$previous"; else on_device "rm -f '$bundles/current'"; fi
exit 1
