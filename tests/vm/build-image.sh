#!/usr/bin/env bash
# A Debian 12 arm64 disk image for the system test: Raspberry Pi OS Bookworm's base (systemd 252,
# Python 3.11, glibc 2.36) from Debian's packages, booted later by qemu-system-aarch64.
#   tests/vm/build-image.sh OUT_DIR
# Writes OUT_DIR/{rootfs.ext4,vmlinuz,initrd.img,id_ed25519,id_ed25519.pub}. The caller caches OUT_DIR by
# a hash of this file: the build takes about 6 minutes (debootstrap's second stage under qemu-user).
set -euo pipefail

OUT=${1:?usage: build-image.sh OUT_DIR}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What a Raspberry Pi OS Lite image has that the test uses: systemd, sshd, sudo, python3 with venv, make,
# cloud-init (Raspberry Pi OS's first-boot mechanism from Trixie on; disabled on the kernel command line
# except in the first-boot test); v4l2-ctl to look at the camera, and a local MQTT broker.
PACKAGES=(systemd-sysv udev dbus kmod iproute2 procps openssh-server sudo python3 python3-venv make
  linux-image-arm64 cloud-init v4l-utils mosquitto)
mapfile -t HOST_DEBS < <(grep -o '^[^#]*' "$(dirname "$0")/host-packages.txt")

say() { printf 'build-image: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot)"; exit 77; }

missing=()
for deb in "${HOST_DEBS[@]}"; do dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# arm64 programs in the chroot run through qemu-user; binfmt_misc is not mounted on these machines.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { say "qemu-aarch64 binfmt is not registered"; exit 69; }

mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "${OUT%/}.tmp-XXXXXX")
root="$work/root"
cleanup() {
  for mnt in dev/pts dev proc sys; do mountpoint -q "$root/$mnt" 2>/dev/null && umount -l "$root/$mnt"; done
  rm -rf "$work"
}
trap cleanup EXIT

say "debootstrap $SUITE arm64 (first stage)"
debootstrap --foreign --arch=arm64 --variant=minbase "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }
say "debootstrap second stage under qemu-user (about 4 minutes)"
chroot "$root" /debootstrap/debootstrap --second-stage >"$work/second-stage.log" 2>&1 ||
  { tail -20 "$root/debootstrap/debootstrap.log" "$work/second-stage.log" >&2; exit 1; }

mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo "deb $MIRROR $SUITE main" >"$root/etc/apt/sources.list"
# An initrd with only what the VM's disk needs (virtio, ext4): generating Debian's default one under
# qemu-user takes over ten minutes.
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/edgesight-vm"
cat >"$root/etc/initramfs-tools/hooks/edgesight-vm" <<'HOOK'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_mmio virtio_blk ext4
HOOK
chmod +x "$root/etc/initramfs-tools/hooks/edgesight-vm"
# Services must not start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
say "installing ${PACKAGES[*]}"
chroot "$root" apt-get update -qq
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${PACKAGES[@]}" >"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
chroot "$root" apt-get clean
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
for mnt in dev/pts dev proc sys; do umount -l "$root/$mnt"; done

say "configuring: host name, disk, network (DHCP from qemu), user pi with sudo and an ssh key"
echo edgesight-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 edgesight-vm\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 rw,relatime 0 1' >"$root/etc/fstab"
# The card's boot partition (FAT, label bootfs) at /boot/firmware, as Raspberry Pi OS mounts it. Only the
# first-boot test attaches one, so it is mounted when it appears instead of being waited for at boot.
mkdir -p "$root/boot/firmware"
cat >"$root/etc/systemd/system/boot-firmware.mount" <<'UNIT'
[Unit]
Description=The card's boot partition
[Mount]
What=/dev/disk/by-label/bootfs
Where=/boot/firmware
Type=vfat
[Install]
WantedBy=dev-disk-by\x2dlabel-bootfs.device
UNIT
chroot "$root" systemctl enable boot-firmware.mount 2>/dev/null
# cloud-init reads its NoCloud seed (user-data, meta-data) from that partition, as on Raspberry Pi OS;
# the network is the image's own (networkd, DHCP), not cloud-init's; C.UTF-8 needs no locale-gen.
cat >"$root/etc/cloud/cloud.cfg.d/99-edgesight-vm.cfg" <<'CFG'
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    fs_label: bootfs
network: {config: disabled}
locale: C.UTF-8
CFG
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/10-wired.network"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service \
  "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# The guest has no route out: nothing should wait for the network to be "online".
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
ln -sf /dev/null "$root/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$root/etc/systemd/system/apt-daily-upgrade.timer"
ln -sf /dev/null "$root/etc/systemd/system/e2scrub_reap.service"
printf 'UseDNS no\n' >"$root/etc/ssh/sshd_config.d/fast.conf"
# Like Raspberry Pi OS: a login user `pi` with password-less sudo; no passwords at all.
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo,video pi
echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$root/etc/sudoers.d/010_pi-nopasswd"
ssh-keygen -q -t ed25519 -N '' -C edgesight-system-test -f "$work/id_ed25519"
install -d -m 0700 -o 1000 -g 1000 "$root/home/pi/.ssh"
install -m 0600 -o 1000 -g 1000 "$work/id_ed25519.pub" "$root/home/pi/.ssh/authorized_keys"

say "writing the ext4 image"
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
cp "$kernel" "$work/vmlinuz"
cp "$root/boot/initrd.img-${kernel##*/vmlinuz-}" "$work/initrd.img"
mke2fs -q -t ext4 -L root -d "$root" "$work/rootfs.ext4" 4G
rm -rf "$root"

rm -rf "$OUT"
mv -T "$work" "$OUT"
trap - EXIT
say "done: $OUT"
