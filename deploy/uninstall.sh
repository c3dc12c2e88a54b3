#!/usr/bin/env bash
# Remove everything install.sh created: service, unit, virtualenv, config, state (bundles) and user.
#   sudo make uninstall
set -euo pipefail

PREFIX=${PREFIX:-/opt/edgesight}
say() { printf 'uninstall: %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { say "run as root: sudo make uninstall"; exit 77; }

if [ -d /run/systemd/system ]; then
  systemctl disable --now edgesight.service >/dev/null 2>&1 || true
fi
# The unit and any drop-ins an admin added (systemctl edit edgesight).
rm -rf /etc/systemd/system/edgesight.service /etc/systemd/system/edgesight.service.d
[ -d /run/systemd/system ] && systemctl daemon-reload
rm -rf "$PREFIX" /etc/edgesight /var/lib/edgesight /var/log/edgesight
if id edgesight >/dev/null 2>&1; then userdel edgesight; fi
getent group edgesight >/dev/null && groupdel edgesight
say "removed edgesight"
