# Sourced by the scripts that act on a device: HOST (user@pi over ssh, or local for this machine) and SSH.
# Run a shell snippet on the device, as root there (sudo) when over ssh.
on_device() {
  if [ "$HOST" = local ]; then bash -c "$1"; else $SSH -o BatchMode=yes "$HOST" "sudo bash -c $(printf '%q' "$1")"; fi
}
