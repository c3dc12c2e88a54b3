"""A new Pi's life in the arm64 VM: the flashed card's first boot, a USB camera, and a Pi Zero 2 W's memory.

The VM boots a fresh copy of the image with 512 MB, cloud-init enabled and a FAT partition labelled
``bootfs`` (Raspberry Pi OS's boot partition) holding what Imager and `make sdcard` leave on a card:
``user-data`` and ``meta-data`` (cloud-init's NoCloud seed), edgesight's source, a bundle, the config and
the wheels. Nothing is done over ssh before the service answers on the forwarded HTTP port: ssh is used
afterwards, only to look. The camera is the kernel's ``vivid`` driver (Debian's kernel ships it), loaded
at boot from the kernel command line as a USB camera is by udev: a real V4L2 device with real formats,
sizes and rates, which can be unplugged and plugged back. The tests run in order, on one machine:
first boot, camera, MQTT and HTTP, unplug, a reload onto MobileNetV2 with the memory peaks, second boot.
Figures (memory peaks, first-boot and re-plug times) go to build/vm/zero2w.json.

    make system-test PYTEST_FLAGS="-k firstboot"
"""

import json
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, bundle_copy, wait_for
from tests.vm.guest import BUNDLES, CACHE, cgroup_memory, exposure, journal, show, wheels
from tests.vm.vm import Vm, cached_image

# Each step waits on its own deadlines; the first one may also build the image (half an hour on a busy machine).
pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

HTTP_PORT = 8080
MEMORY_MB = 512  # a Raspberry Pi Zero 2 W
RESULTS = "/var/log/edgesight/results.jsonl"
# One video-capture node (/dev/video0), input 0 being vivid's webcam: sizes from 320x180 to 4K, YUYV.
VIVID = ("modules-load=vivid", "vivid.n_devs=1", "vivid.node_types=0x1")
WIDTH, HEIGHT = 640, 480
CONFIG = f"""\
[source]
uri = "/dev/video0"
width = {WIDTH}
height = {HEIGHT}
fps = 10.0
fourcc = "YUYV"
timeout_s = 2.0
reconnect_min_s = 1.0
[model]
path = "{BUNDLES}/current"
[output]
jsonl = "{RESULTS}"
[mqtt]
host = "127.0.0.1"
[http]
host = "0.0.0.0"
port = {HTTP_PORT}
"""
# What Raspberry Pi Imager writes for a cloud-init image (its user is already in the VM's image).
USER_DATA = "#cloud-config\nhostname: pi-zero\nmanage_etc_hosts: true\ntimezone: Etc/UTC\n"
META_DATA = "instance_id: rpios-image\n"
FIGURES: dict[str, float] = {}


def fat_image(folder: Path, image: Path, label: str = "bootfs") -> Path:
    """A FAT32 file system holding ``folder``'s contents, written without a loop device (mtools)."""
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // 2**20 + 64
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", label, "-C", str(image), str(size_mb * 1024)], check=True)
    entries = [str(p) for p in sorted(folder.iterdir())]
    subprocess.run(["mcopy", "-s", "-Q", "-i", str(image), *entries, "::/"], check=True)
    return image


def mobilenet_bundle(target: Path) -> Path:
    """MobileNetV2 (alpha 1.0, 224x224, 1000 classes, random weights) as an int8 bundle: built by the
    benchmark's own builder in a process of its own, and cached with its models under build/bench."""
    from bench.models import MODELS, model_dir

    build = ROOT / "build" / "bench"
    subprocess.run([sys.executable, "-m", "bench.models", str(build), "mobilenetv2"], cwd=ROOT, check=True)
    return bundle_copy(model_dir(build, MODELS["mobilenetv2"]) / "bundle", target, "mobilenetv2-1.0.0")


@pytest.fixture(scope="module")
def card(tmp_path_factory, digits_bundle) -> Path:
    """The boot partition of a freshly flashed card, after Imager and `make sdcard`, as a disk image."""
    root = tmp_path_factory.mktemp("card")
    boot = root / "bootfs"
    boot.mkdir()
    (boot / "user-data").write_text(USER_DATA)
    (boot / "meta-data").write_text(META_DATA)
    (boot / "cmdline.txt").write_text("console=serial0,115200 root=PARTUUID=4e639091-02 rootwait\n")
    config = root / "edgesight.toml"
    config.write_text(CONFIG)
    bundle = bundle_copy(digits_bundle, root / "digits", "digits-1.0.0")
    make = [
        "make", "--no-print-directory", "sdcard", f"BOOT={boot}", f"BUNDLE={bundle}", f"CONFIG={config}",
        f"WHEELS={wheels()}",
    ]  # fmt: skip
    result = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "via cloud-init" in result.stdout, result.stdout + result.stderr
    return fat_image(boot, root / "bootfs.img")


@pytest.fixture(scope="module")
def zero(tmp_path_factory, card):
    """The Pi Zero 2 W, booted once from the fresh card; the tests look at it and finally reboot it."""
    machine = Vm(
        cached_image(CACHE), tmp_path_factory.mktemp("zero"), memory_mb=MEMORY_MB, disks=(card,),
        kernel_args=VIVID, cloud_init=True,
    )  # fmt: skip
    machine.host_port(HTTP_PORT)
    try:
        yield machine
    finally:
        if machine.process is not None and machine.process.poll() is None:
            logs = machine.sudo(
                "journalctl -b --no-pager -u edgesight -u cloud-final; cat /var/log/cloud-init-output.log",
                check=False,
                timeout=120,
            )
            (machine.workdir / "journal.txt").write_text(logs.stdout)
        machine.shutdown()
        (CACHE / "zero2w.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


def http_json(vm: Vm, path: str) -> dict | None:
    """GET the forwarded HTTP port from the host; None until the daemon answers."""
    url = f"http://127.0.0.1:{vm.host_port(HTTP_PORT)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def frames(vm: Vm) -> int:
    status = http_json(vm, "/api/status")
    return status["counters"]["frames"] if status else -1


def classify_for_a_while(vm: Vm, count: int, timeout: float = 600) -> None:
    start = frames(vm)
    wait_for(lambda: frames(vm) >= start + count, timeout=timeout, what=f"{count} more frames")


def no_oom(vm: Vm) -> None:
    memory = cgroup_memory(vm)
    assert memory["oom_kill"] == 0 and memory["oom"] == 0, memory
    kernel = vm.sudo("journalctl -k -b --no-pager -o cat | grep -ci 'out of memory' || true").stdout.strip()
    assert kernel == "0", "the kernel killed something for memory"


def mib(value: int) -> float:
    return round(value / 2**20, 1)


def served(vm: Vm) -> dict | None:
    """The latest result from the forwarded HTTP port, None until there is one; fails once QEMU is gone."""
    assert vm.process.poll() is None, f"QEMU exited; console: {vm.console}"
    return http_json(vm, "/api/result")


def test_the_first_boot_alone_installs_and_serves_a_result(zero):
    started = time.monotonic()
    zero.boot(wait_for_ssh=False)
    result = wait_for(lambda: served(zero), timeout=1800, what=f"a result on the forwarded port ({zero.console})")
    FIGURES["first_boot_to_result_s"] = round(time.monotonic() - started, 1)
    assert set(result) >= {"label", "score", "ts"}
    # Only now a look inside: cloud-init ran the card's command, which installed from the card's wheels.
    zero.wait_for_ssh()
    status = zero.ssh("cloud-init status --long", check=False).stdout
    assert "status: done" in status, status
    output = zero.sudo("cat /var/log/cloud-init-output.log").stdout
    assert output.count("install: installing edgesight[edge]") == 1, output[-3000:]
    assert "enabled edgesight.service" in output
    assert zero.ssh("hostname").stdout.strip() == "pi-zero"
    assert zero.ssh("systemctl is-enabled edgesight").stdout.strip() == "enabled"
    assert zero.sudo(f"readlink {BUNDLES}/current").stdout.strip() == "digits-1.0.0"
    assert exposure(zero) <= 1.2
    # No Coral, and a systemd that would ignore SocketBindAllow=: only the commented example drop-in.
    assert zero.ssh("ls /etc/systemd/system/edgesight.service.d").stdout.split() == ["ip-address-allow.conf"]


def test_a_v4l2_camera_at_the_requested_size_under_the_full_sandbox(zero):
    assert http_json(zero, "/api/status")["health"]["ok"] is True
    # The device itself says what it is streaming: the size and format the config asked for.
    fmt = zero.ssh("v4l2-ctl -d /dev/video0 --get-fmt-video").stdout
    assert f"Width/Height      : {WIDTH}/{HEIGHT}" in fmt and "'YUYV'" in fmt, fmt
    log = journal(zero)
    assert "reading camera /dev/video0" in log and f"camera /dev/video0: {WIDTH}x{HEIGHT}" in log
    assert "asked for" not in log
    # ... read through the sandbox: devices closed but for cameras, a user namespace, seccomp, W^X.
    unit = show(zero, "DevicePolicy", "PrivateUsers", "MemoryDenyWriteExecute", "TasksMax", "MainPID")
    assert unit["DevicePolicy"] == "closed" and unit["PrivateUsers"] == "yes"
    assert unit["MemoryDenyWriteExecute"] == "yes" and unit["TasksMax"] == "64"
    pid = unit["MainPID"]
    namespaces = zero.sudo(f"readlink /proc/1/ns/user /proc/{pid}/ns/user").stdout.split()
    assert namespaces[0] != namespaces[1]
    assert "Seccomp:\t2" in zero.sudo(f"cat /proc/{pid}/status").stdout
    classify_for_a_while(zero, 20)


def cold_start(vm: Vm, count: int, name: str) -> None:
    """Start the service on an empty page cache, so that its cgroup is charged for every library, Python
    and model page it reads, classify ``count`` frames, and record its memory under ``name``: the
    cgroup's peak (what MemoryMax= limits: process memory and the page cache it read), its process
    memory (anon) and the process's peak RSS."""
    drop_caches = "sync && echo 3 > /proc/sys/vm/drop_caches"
    vm.sudo(f"systemctl stop edgesight && {drop_caches} && systemctl start edgesight", timeout=900)
    classify_for_a_while(vm, count)
    memory = cgroup_memory(vm)
    pid = show(vm, "MainPID")["MainPID"]
    hwm_kib = int(vm.sudo(f"awk '/^VmHWM/ {{print $2}}' /proc/{pid}/status").stdout)
    FIGURES[f"{name}_cgroup_peak_mib"] = mib(memory["peak"])
    FIGURES[f"{name}_anon_mib"] = mib(memory["anon"])
    FIGURES[f"{name}_page_cache_mib"] = mib(memory["file"])
    FIGURES[f"{name}_peak_rss_mib"] = round(hwm_kib / 1024, 1)
    FIGURES[f"{name}_tasks"] = int(show(vm, "TasksCurrent")["TasksCurrent"])
    no_oom(vm)


def test_mqtt_and_http_while_classifying_within_a_zero_2_ws_memory(zero):
    classify_for_a_while(zero, 300)
    status = http_json(zero, "/api/status")
    mqtt = status["sinks"]["mqtt"]
    assert mqtt["connected"] is True and mqtt["delivered"] >= 300, mqtt
    assert mqtt["failed"] == mqtt["dropped"] == 0, mqtt
    FIGURES["first_boot_cgroup_peak_mib"] = mib(cgroup_memory(zero)["peak"])
    no_oom(zero)
    cold_start(zero, 100, "digits")
    assert http_json(zero, "/api/status")["sinks"]["mqtt"]["connected"] is True


def test_an_unplugged_camera_is_back_within_2_s_of_its_return_without_a_restart(zero):
    before = show(zero, "MainPID", "NRestarts")
    script = (Path(__file__).parent / "replug.py").read_text()
    # Unplugged until the daemon backs off by 4 s, past the 2 s it has to notice the return in.
    times = json.loads(zero.sudo("python3 - --backoff 4.0", input=script, timeout=300).stdout)
    log = journal(zero, f"--since=@{times['unplugged']:.3f}")
    # The loss (a read that fails), then the backoff growing while the node is gone.
    assert "camera /dev/video0 ended or delivered no frame within 2000 ms; retrying in 1.0 s" in log, log
    for backoff in ("2.0", "4.0"):
        assert f"camera /dev/video0 is not there (/dev/video0 is missing: unplugged?); retrying in {backoff} s" in log
    first = wait_for(lambda: first_result_after(zero, times["node"]), timeout=60, what="a result after the re-plug")
    FIGURES["replug_node_to_result_s"] = round(first - times["node"], 2)
    FIGURES["replug_modprobe_to_result_s"] = round(first - times["modprobe"], 2)
    assert first - times["node"] <= 2.0, f"the first result came {first - times['node']:.2f} s after /dev/video0"
    assert "camera /dev/video0 answers again: reopening it now" in journal(zero, f"--since=@{times['node']:.3f}")
    assert show(zero, "MainPID", "NRestarts") == before


def first_result_after(vm: Vm, since: float) -> float | None:
    """When the first frame captured after ``since`` (guest clock) had its result, from the JSON lines."""
    script = (
        "import json, sys\n"
        "for line in open(sys.argv[1]):\n"
        "    result = json.loads(line)\n"
        "    if result['ts'] >= float(sys.argv[2]):\n"
        "        print(result['ts'] + result['frame_age_ms'] / 1000); break\n"
    )
    out = vm.sudo(f"python3 -c {shlex.quote(script)} {RESULTS} {since}").stdout.strip()
    return float(out) if out else None


def test_a_reload_onto_mobilenetv2_and_its_memory(zero, tmp_path):
    bundle = mobilenet_bundle(tmp_path / "mobilenetv2-1.0.0")
    zero.copy_tree(bundle, f"{BUNDLES}/mobilenetv2-1.0.0", owner="edgesight")
    pid = show(zero, "MainPID")["MainPID"]
    zero.sudo(f"ln -sfn mobilenetv2-1.0.0 {BUNDLES}/.current.new && mv -T {BUNDLES}/.current.new {BUNDLES}/current")
    zero.sudo("systemctl reload edgesight", timeout=600)
    wait_for(
        lambda: ((http_json(zero, "/api/status") or {}).get("model") or {}).get("version") == "mobilenetv2-1.0.0",
        timeout=600,
        what="MobileNetV2 to be live",
    )
    classify_for_a_while(zero, 10)
    assert show(zero, "MainPID")["MainPID"] == pid
    # The digits model running, the new bundle checked in a child, then MobileNetV2 loaded: all in one cgroup.
    FIGURES["reload_digits_to_mobilenetv2_cgroup_peak_mib"] = mib(cgroup_memory(zero)["peak"])
    no_oom(zero)
    cold_start(zero, 20, "mobilenetv2")
    FIGURES["guest_mem_available_mib"] = int(zero.ssh("awk '/MemAvailable/ {print $2}' /proc/meminfo").stdout) // 1024


def test_the_second_boot_does_not_install_again(zero):
    venv = zero.sudo("stat -c %i.%Z /opt/edgesight/venv/bin/python").stdout
    zero.shutdown()
    zero.boot(wait_for_ssh=False)
    wait_for(lambda: served(zero), timeout=900, what=f"a result after the second boot ({zero.console})")
    zero.wait_for_ssh()
    output = zero.sudo("cat /var/log/cloud-init-output.log").stdout
    assert output.count("install: installing edgesight[edge]") == 1
    assert zero.sudo("stat -c %i.%Z /opt/edgesight/venv/bin/python").stdout == venv
    assert "status: done" in zero.ssh("cloud-init status", check=False).stdout
    assert show(zero, "NRestarts")["NRestarts"] == "0"
