#!/usr/bin/env bash
# Install edgesight on this machine as a hardened systemd service (Raspberry Pi OS / Debian 12).
#   sudo make install                 # from a checkout of edgesight
#   sudo WHEELS=/path/to/wheels make install   # offline, from wheels prepared elsewhere
# Layout: /opt/edgesight/venv, /etc/edgesight/edgesight.toml, /var/lib/edgesight/bundles/<version>,
# /var/lib/edgesight/bundles/current -> <version>, /etc/systemd/system/edgesight.service, user edgesight.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/edgesight}
CONF_DIR=/etc/edgesight
STATE_DIR=/var/lib/edgesight
UNIT=/etc/systemd/system/edgesight.service
DROPINS=/etc/systemd/system/edgesight.service.d
SERVICE_USER=edgesight
WHEELS=${WHEELS:-}
CORAL=${CORAL:-auto}              # yes: allow the Coral's devices before it is plugged in; auto: if one is
SOCKET_BIND=${SOCKET_BIND:-auto}  # yes: write SocketBindAllow= even where systemd ignores it; auto: where enforced

say() { printf 'install: %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { say "run as root: sudo make install"; exit 77; }

# Debian's Python ships venv separately; the Pi camera stack comes from Raspberry Pi OS's apt repository.
missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if apt-cache show python3-picamera2 >/dev/null 2>&1 && ! dpkg -s python3-picamera2 >/dev/null 2>&1; then
  missing+=(python3-picamera2)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# A venv that sees the system's python3-picamera2. picamera2's compiled helpers (simplejpeg) are built
# against Debian's numpy 1.x, so where picamera2 is present numpy stays below 2 (the `picamera` extra).
extras=edge
if python3 -c 'import picamera2' 2>/dev/null; then extras=edge,picamera; fi
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX/venv"
pip_args=(--disable-pip-version-check --quiet)
[ -n "$WHEELS" ] && pip_args+=(--no-index --find-links "$WHEELS")
say "installing edgesight[$extras] into $PREFIX/venv"
"$PREFIX/venv/bin/pip" install "${pip_args[@]}" "$SRC[$extras]"

getent group video >/dev/null || groupadd --system video
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin \
    --groups video --comment "edgesight daemon" "$SERVICE_USER"
fi
# Camera nodes belong to group video; the unit relies on the user's own membership.
id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video || usermod -a -G video "$SERVICE_USER"
install -d -m 0755 "$CONF_DIR"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$STATE_DIR" "$STATE_DIR/bundles"
if [ ! -e "$CONF_DIR/edgesight.toml" ]; then
  install -m 0644 "$SRC/systemd/edgesight.toml" "$CONF_DIR/edgesight.toml"
else
  say "keeping the existing $CONF_DIR/edgesight.toml"
fi
sed "s#/opt/edgesight#$PREFIX#g" "$SRC/systemd/edgesight.service" >"$UNIT"
chmod 0644 "$UNIT"

# A Coral Edge TPU on PCIe/M.2 (the apex driver, or Global Unichip's vendor id on the bus) or on USB
# (before and after its firmware is loaded).
coral_present() {
  compgen -G '/dev/apex_*' >/dev/null && return 0
  grep -qsx 0x1ac1 /sys/bus/pci/devices/*/vendor && return 0
  local dev
  for dev in /sys/bus/usb/devices/*; do
    case "$(cat "$dev/idVendor" 2>/dev/null):$(cat "$dev/idProduct" 2>/dev/null)" in
      1a6e:089a | 18d1:9302) return 0 ;;
    esac
  done
  return 1
}
install -d -m 0755 "$DROPINS"
if [ "$CORAL" = yes ] || { [ "$CORAL" = auto ] && coral_present; }; then
  install -m 0644 "$SRC/systemd/coral.conf" "$DROPINS/coral.conf"
  say "a Coral Edge TPU: its devices are allowed ($DROPINS/coral.conf)"
fi
# The only TCP port the daemon may listen on is the configured HTTP port (UDP stays open for RTSP's RTP).
# SocketBindAllow= needs systemd built with its BPF framework: Debian 12's systemd 252 (Raspberry Pi OS
# Bookworm) is not, and ignores the directive without a word, so it is written only where it is enforced.
if [ "$SOCKET_BIND" = yes ] || { [ "$SOCKET_BIND" = auto ] && systemctl --version 2>/dev/null | grep -q '+BPF_FRAMEWORK'; }; then
  read_port='import sys
from edge.config import load_config
from edge.errors import EdgesightError
try:
    http = load_config(sys.argv[1]).http
except EdgesightError as e:
    sys.exit(f"install: {e}")
print(http.port if http else "")'
  if port=$("$PREFIX/venv/bin/python" -c "$read_port" "$CONF_DIR/edgesight.toml"); then
    {
      echo "# Written by install.sh from [http] port in $CONF_DIR/edgesight.toml: after changing it, run"
      echo "# sudo make install again (it keeps the config). UDP stays open for RTSP's RTP/RTCP ports."
      echo "[Service]"
      echo "SocketBindDeny=any"
      [ -n "$port" ] && echo "SocketBindAllow=tcp:$port"
      echo "SocketBindAllow=udp"
    } >"$DROPINS/socket-bind.conf"
    say "listening limited to TCP port ${port:-(none: [http] is off)} ($DROPINS/socket-bind.conf)"
  else
    say "the config does not load, so SocketBindAllow= is not set; fix it and run sudo make install again"
    rm -f "$DROPINS/socket-bind.conf"
  fi
else
  rm -f "$DROPINS/socket-bind.conf"
fi
# An example that is off until edited: keep whatever the admin made of it.
[ -e "$DROPINS/ip-address-allow.conf" ] || install -m 0644 "$SRC/systemd/ip-address-allow.conf" "$DROPINS/"

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable edgesight.service >/dev/null
  say "enabled edgesight.service; put a bundle in $STATE_DIR/bundles/ and link it as 'current', then:"
  say "  sudo systemctl start edgesight && journalctl -u edgesight -f"
else
  say "installed; systemd is not running here, so the service was not enabled"
fi
