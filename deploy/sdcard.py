"""Prepare a freshly flashed Raspberry Pi OS card so that the Pi installs edgesight on its first boot.

    make sdcard BOOT=/media/$USER/bootfs BUNDLE=bundles/photos [CONFIG=my.toml] [WHEELS=build/wheels]

Writes ``edgesight/`` onto the boot partition (the source, the bundle, the config, the wheels of
`make wheels` for a Pi without internet, and a first-boot script) and hooks the script into whichever
first-boot mechanism the image uses:

- images with cloud-init (Raspberry Pi OS from Trixie on, and Imager's "cloud-init" customisation):
  a ``runcmd`` entry in ``user-data``, merged into what Imager wrote there (hostname, users, Wi-Fi);
- older images: Raspberry Pi Imager's ``firstrun.sh`` hook (``systemd.run=`` in ``cmdline.txt``), which
  installs a one-shot unit, because the install needs the network that the early hook does not have.
"""

import argparse
import json
import shlex
import shutil
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CARD_DIR = "edgesight"
SOURCE_ITEMS = ("edge", "train", "systemd", "deploy", "setup.cfg", "pyproject.toml", "README.md", "Makefile")
FIRSTRUN_ARGS = (
    "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
)

FIRSTBOOT = """#!/bin/bash
# Installs edgesight from the boot partition, once, with the network up. Log: journalctl -u edgesight-firstboot
set -euo pipefail
card=$(dirname "$(readlink -f "$0")")
src=/opt/edgesight/src
mkdir -p "$src"
tar -xzf "$card/source.tar.gz" -C "$src"
# The card's config goes first: install.sh keeps it and fits the sandbox to it (the HTTP port).
if [ -f "$card/edgesight.toml" ]; then install -D -m 0644 "$card/edgesight.toml" /etc/edgesight/edgesight.toml; fi
WHEELS=$( [ -d "$card/wheels" ] && echo "$card/wheels" || true ) bash "$src/deploy/install.sh"
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$card/bundle/manifest.json")
rm -rf "/var/lib/edgesight/bundles/$version"
cp -r "$card/bundle" "/var/lib/edgesight/bundles/$version"
ln -sfn "$version" /var/lib/edgesight/bundles/current
chown -R edgesight:edgesight /var/lib/edgesight/bundles
systemctl start edgesight.service
"""

FIRSTBOOT_UNIT = """[Unit]
Description=Install edgesight from the boot partition (first boot only)
Wants=network-online.target
After=network-online.target
ConditionPathExists=!/var/lib/edgesight/bundles/current

[Service]
Type=oneshot
ExecStart=/bin/bash {script}
ExecStartPost=/bin/systemctl disable edgesight-firstboot.service

[Install]
WantedBy=multi-user.target
"""


class CardError(Exception):
    """A card or input that cannot be prepared; the message says what to do."""


def boot_mount_point(boot: Path) -> str:
    """Where the running Pi mounts the boot partition: /boot/firmware from Bookworm on, /boot before."""
    issue = boot / "issue.txt"
    older = issue.is_file() and any(name in issue.read_text() for name in ("buster", "bullseye"))
    return "/boot" if older else "/boot/firmware"


def copy_payload(boot: Path, bundle: Path, config: Path | None, wheels: Path | None = None) -> Path:
    target = boot / CARD_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    with tarfile.open(target / "source.tar.gz", "w:gz") as archive:
        for item in SOURCE_ITEMS:
            archive.add(ROOT / item, arcname=item, filter=_skip_caches)
    shutil.copytree(bundle, target / "bundle")
    if config is not None:
        shutil.copy(config, target / "edgesight.toml")
    if wheels is not None:
        shutil.copytree(wheels, target / "wheels", ignore=shutil.ignore_patterns(".*"))
    (target / "firstboot.sh").write_text(FIRSTBOOT)
    return target


def _skip_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name or info.name.endswith(".egg-info") else info


def hook_cloud_init(boot: Path, script: str) -> None:
    """Merge a runcmd entry into user-data, keeping everything Imager (or the user) put there."""
    path = boot / "user-data"
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CardError(f"{path}: not a cloud-config mapping; re-flash the card or fix the file")
    command = ["bash", script]
    runcmd = [entry for entry in data.get("runcmd") or [] if entry != command]
    data["runcmd"] = [*runcmd, command]
    path.write_text("#cloud-config\n" + yaml.safe_dump(data, sort_keys=False))


def hook_firstrun(boot: Path, script: str) -> None:
    """Use Imager's firstrun.sh hook to enable a one-shot unit that installs once the network is up."""
    cmdline = boot / "cmdline.txt"
    if not cmdline.is_file():
        raise CardError(f"{boot}: no cmdline.txt; BOOT must be the boot partition of a Raspberry Pi OS card")
    unit = FIRSTBOOT_UNIT.format(script=script)
    enable = (
        f"cat > /etc/systemd/system/edgesight-firstboot.service <<'UNIT'\n{unit}UNIT\n"
        "systemctl enable edgesight-firstboot.service\n"
    )
    firstrun = boot / "firstrun.sh"
    marker = "# edgesight first boot\n"
    if firstrun.exists():
        text = firstrun.read_text()
        if marker not in text:
            # Imager's script ends by removing itself and its cmdline arguments: run before that.
            head, sep, tail = text.rpartition("rm -f /boot/firstrun.sh")
            text = head + marker + enable + sep + tail if sep else text + "\n" + marker + enable
        firstrun.write_text(text)
    else:
        firstrun.write_text(
            "#!/bin/bash\nset +e\n" + marker + enable + "rm -f /boot/firstrun.sh\n"
            "sed -i 's| systemd.run.*||g' /boot/cmdline.txt\nexit 0\n"
        )
    line = cmdline.read_text().strip()
    if "systemd.run=" not in line:
        cmdline.write_text(f"{line} {FIRSTRUN_ARGS}\n")


def prepare_card(boot: Path, bundle: Path, config: Path | None, wheels: Path | None = None) -> str:
    """Write the payload and the first-boot hook; return which mechanism was used."""
    if not boot.is_dir():
        raise CardError(f"{boot}: no such folder; mount the card's boot partition and pass its path as BOOT")
    if not (bundle / "manifest.json").is_file():
        raise CardError(f"{bundle}: not a bundle (no manifest.json); build one with make quantize")
    json.loads((bundle / "manifest.json").read_text())
    if config is not None and not config.is_file():
        raise CardError(f"{config}: no such config file")
    if wheels is not None and not any(wheels.glob("*.whl")):
        raise CardError(f"{wheels}: no wheels in it; make them with make wheels WHEELS={wheels}")
    copy_payload(boot, bundle, config, wheels)
    script = f"{boot_mount_point(boot)}/{CARD_DIR}/firstboot.sh"
    uses_cloud_init = (boot / "user-data").exists() or (boot / "meta-data").exists()
    if uses_cloud_init:
        hook_cloud_init(boot, script)
        return "cloud-init"
    hook_firstrun(boot, shlex.quote(script))
    return "firstrun"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sdcard.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--boot", type=Path, required=True, help="the mounted boot partition of the card")
    parser.add_argument("--bundle", type=Path, required=True, help="bundle to install")
    parser.add_argument("--config", type=Path, help="edgesight.toml to install (default: the commented default)")
    parser.add_argument("--wheels", type=Path, help="wheels from `make wheels`, for a Pi without internet")
    args = parser.parse_args(argv)
    try:
        mechanism = prepare_card(args.boot, args.bundle, args.config, args.wheels)
    except CardError as e:
        print(f"sdcard: error: {e}", file=sys.stderr)
        return 65
    print(f"sdcard: {args.boot} will install edgesight on first boot (via {mechanism}); eject the card safely")
    return 0


if __name__ == "__main__":
    sys.exit(main())
