"""`make sdcard` on boot partitions laid out as Raspberry Pi Imager leaves them."""

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGER_USER_DATA = """#cloud-config
hostname: pi-garage
manage_etc_hosts: true
users:
  - name: pi
    groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests test@example
runcmd:
  - [ sed, -i, 's/^#PasswordAuthentication.*/PasswordAuthentication no/', /etc/ssh/sshd_config ]
"""
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait\n"


@pytest.fixture
def bundle(tmp_path) -> Path:
    path = tmp_path / "bundle"
    (path / "golden").mkdir(parents=True)
    (path / "manifest.json").write_text('{"schema_version": 1, "version": "20260101-000000"}')
    (path / "model.tflite").write_bytes(b"TFL3")
    return path


def boot_partition(tmp_path: Path, cloud_init: bool) -> Path:
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "cmdline.txt").write_text(CMDLINE)
    (boot / "config.txt").write_text("dtparam=audio=on\ncamera_auto_detect=1\n")
    if cloud_init:
        (boot / "user-data").write_text(IMAGER_USER_DATA)
        (boot / "meta-data").write_text("instance_id: rpios-image\n")
    return boot


def prepare(boot: Path, bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "sdcard.py"), "--boot", str(boot), "--bundle", str(bundle)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cloud_init_card_gets_a_runcmd_merged_into_imagers_user_data(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=True)
    result = prepare(boot, bundle)
    assert result.returncode == 0, result.stderr
    assert "via cloud-init" in result.stdout
    data = yaml.safe_load((boot / "user-data").read_text())
    assert data["hostname"] == "pi-garage" and data["users"][0]["name"] == "pi"
    assert data["runcmd"][0][0] == "sed"
    assert data["runcmd"][-1] == ["bash", "/boot/firmware/edgesight/firstboot.sh"]
    assert (boot / "cmdline.txt").read_text() == CMDLINE
    # Idempotent: preparing the card twice adds the command once.
    assert prepare(boot, bundle).returncode == 0
    assert yaml.safe_load((boot / "user-data").read_text())["runcmd"].count(data["runcmd"][-1]) == 1


@pytest.mark.skipif(not shutil.which("cloud-init"), reason="cloud-init is not installed (make test installs it)")
def test_user_data_passes_cloud_inits_schema(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=True)
    assert prepare(boot, bundle).returncode == 0
    check = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(boot / "user-data")], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Valid" in check.stdout


def test_older_card_uses_the_firstrun_hook_and_a_network_online_unit(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=False)
    assert prepare(boot, bundle).returncode == 0
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.startswith(CMDLINE.strip()) and "systemd.run=/boot/firstrun.sh" in cmdline
    assert cmdline.count("\n") == 1  # cmdline.txt must stay a single line
    firstrun = (boot / "firstrun.sh").read_text()
    assert "After=network-online.target" in firstrun and "systemctl enable edgesight-firstboot.service" in firstrun
    syntax = subprocess.run(["bash", "-n", str(boot / "firstrun.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_imagers_own_firstrun_is_kept_and_ours_runs_before_it_removes_itself(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=False)
    imager = (
        "#!/bin/bash\nset +e\nhostnamectl set-hostname pi\n"
        "rm -f /boot/firstrun.sh\nsed -i 's| systemd.run.*||g' /boot/cmdline.txt\nexit 0\n"
    )
    (boot / "firstrun.sh").write_text(imager)
    (boot / "cmdline.txt").write_text(CMDLINE.strip() + " systemd.run=/boot/firstrun.sh\n")
    assert prepare(boot, bundle).returncode == 0
    text = (boot / "firstrun.sh").read_text()
    assert text.index("hostnamectl") < text.index("edgesight-firstboot") < text.index("rm -f /boot/firstrun.sh")
    assert (boot / "cmdline.txt").read_text().count("systemd.run=") == 1


def test_payload_holds_source_bundle_and_script(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=True)
    assert prepare(boot, bundle).returncode == 0
    payload = boot / "edgesight"
    assert (payload / "bundle" / "manifest.json").is_file()
    with tarfile.open(payload / "source.tar.gz") as archive:
        names = archive.getnames()
    assert "deploy/install.sh" in names and "edge/cli.py" in names and "setup.cfg" in names
    assert not any("__pycache__" in name for name in names)
    assert subprocess.run(["bash", "-n", str(payload / "firstboot.sh")]).returncode == 0


def test_not_a_boot_partition_is_a_one_line_error(tmp_path, bundle):
    result = prepare(tmp_path / "absent", bundle)
    assert result.returncode == 65 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("sdcard: error:") and "mount the card" in result.stderr


def test_wheels_ride_on_the_card_and_the_config_is_in_place_before_install(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = "numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.whl"
    (wheels / wheel).write_bytes(b"PK")
    (wheels / ".complete").touch()
    config = tmp_path / "my.toml"
    config.write_text('[source]\nuri = "/dev/video0"\n[model]\npath = "/var/lib/edgesight/bundles/current"\n')
    args = ["--boot", str(boot), "--bundle", str(bundle), "--config", str(config), "--wheels", str(wheels)]
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "sdcard.py"), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    payload = boot / "edgesight"
    assert sorted(p.name for p in (payload / "wheels").iterdir()) == [wheel]
    script = (payload / "firstboot.sh").read_text()
    # install.sh fits the sandbox to the config it finds, so the card's config must be there first.
    assert script.index("/etc/edgesight/edgesight.toml") < script.index("deploy/install.sh")


def test_an_empty_wheels_folder_is_a_one_line_error(tmp_path, bundle):
    boot = boot_partition(tmp_path, cloud_init=True)
    (tmp_path / "wheels").mkdir()
    args = ["--boot", str(boot), "--bundle", str(bundle), "--wheels", str(tmp_path / "wheels")]
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "sdcard.py"), *args], capture_output=True, text=True)
    assert result.returncode == 65 and "Traceback" not in result.stderr
    assert "no wheels in it; make them with make wheels" in result.stderr
