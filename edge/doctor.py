"""``edgesight doctor``: what this machine offers the daemon, and every problem with its fix."""

import ctypes.util
import glob
import importlib
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.capture import v4l2_device
from edge.capture.picamera import SCHEME as PICAMERA_SCHEME
from edge.errors import EdgesightError
from edge.runtime import EDGETPU_LIBRARY, available_runtimes

STATUSES = ("ok", "warn", "fail")  # warn: optional part missing; fail: the daemon cannot run as configured


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def check_platform() -> Check:
    detail = f"{platform.system()} {platform.release()} {platform.machine()}, Python {platform.python_version()}"
    return Check("platform", "ok", detail)


def check_numpy() -> Check:
    return Check("numpy", "ok", np.__version__)


def check_opencv() -> Check:
    from cv2 import videoio_registry as registry

    backends = list(dict.fromkeys(registry.getBackendName(b) for b in registry.getBackends()))
    streams = {registry.getBackendName(b) for b in registry.getStreamBackends()}
    detail = f"{cv2.__version__}; video backends: {', '.join(backends) or 'none'}"
    if "FFMPEG" not in streams:
        fix = "install opencv-python-headless from PyPI, whose wheels include FFmpeg"
        return Check("opencv", "fail", detail + "; no FFmpeg: video files and RTSP/HTTP streams will not open", fix)
    if "V4L2" not in backends:
        return Check("opencv", "warn", detail + "; no V4L2: USB cameras will not open", "use a Linux build of OpenCV")
    return Check("opencv", "ok", detail)


def check_runtime() -> Check:
    found = available_runtimes()
    usable = [(name, version) for name, version in found if version[0].isdigit() or version == "unknown"]
    detail = "; ".join(f"{name} {version}" for name, version in found)
    if not usable:
        return Check("runtime", "fail", detail, "pip install ai-edge-litert (or tflite-runtime on numpy<2 systems)")
    return Check("runtime", "ok", f"using {usable[0][0]} {usable[0][1]} ({detail})")


def check_picamera2(needed: bool = False) -> Check:
    """``needed``: the config reads the Pi camera, so a missing camera stack fails instead of warning."""
    missing = "fail" if needed else "warn"
    try:
        module = importlib.import_module("picamera2")
    except ImportError as e:
        return Check(
            "picamera2",
            missing,
            f"not importable ({e}); " + ("the config's source needs it" if needed else "only needed for the Pi camera"),
            "sudo apt install python3-picamera2, and make the virtualenv with --system-site-packages",
        )
    try:
        cameras = module.Picamera2.global_camera_info()
    except Exception as e:
        return Check("picamera2", missing, f"imports, but listing cameras failed ({e})", "check the camera cable")
    if not cameras:
        return Check("picamera2", missing, "imports; no camera connected", "connect the camera, then reboot")
    return Check("picamera2", "ok", ", ".join(str(c.get("Model", c)) for c in cameras))


def check_cameras(root: str = "/dev", needed: str = "") -> Check:
    """``needed``: the V4L2 device the config reads (``/dev/video0``), which must exist."""
    devices = sorted(glob.glob(f"{root}/video*"))  # noqa: PTH207 (a device glob, not a project path)
    if needed and needed not in devices:
        found = ", ".join(devices) or "none"
        fix = "plug in the camera, or set [source] uri to a device that exists"
        return Check("cameras", "fail", f"the config's {needed} does not exist (found: {found})", fix)
    if not devices:
        return Check("cameras", "warn", f"no {root}/video* devices", "plug in a USB camera, or use picamera2")
    named = []
    for device in devices:
        name_file = Path("/sys/class/video4linux") / Path(device).name / "name"
        name = name_file.read_text().strip() if name_file.is_file() else "?"
        named.append(f"{device} ({name})")
    return Check("cameras", "ok", ", ".join(named))


def check_edgetpu() -> Check:
    if ctypes.util.find_library("edgetpu") is None:
        return Check(
            "edgetpu",
            "warn",
            f"{EDGETPU_LIBRARY} not found; only needed for models compiled for the Coral Edge TPU",
            "install libedgetpu1-std from Coral's apt repository",
        )
    return Check("edgetpu", "ok", f"{EDGETPU_LIBRARY} found")


def check_model(path: str, **model_options) -> Check:
    from edge.classifier import load_classifier
    from edge.config import ModelConfig

    try:
        classifier = load_classifier(ModelConfig(path=path, **model_options))
        checked = classifier.golden_check()
    except EdgesightError as e:
        return Check("model", "fail", str(e), "rebuild or copy the bundle again; see the message for what is wrong")
    info = classifier.describe()
    golden = f"{checked} golden samples agree" if checked else "no golden samples to check"
    detail = f"{path}: {classifier.name}, {info['labels']} labels, input {info['input']}, {golden}"
    return Check("model", "ok", detail)


def diagnose(model: str | None = None, model_options: dict | None = None, source: str = "") -> list[Check]:
    """Every check; ``source``, a config's ``[source] uri``, turns what it needs from warnings into failures."""
    checks = [
        check_platform(),
        check_numpy(),
        check_opencv(),
        check_runtime(),
        check_picamera2(needed=source.partition(":")[0] == PICAMERA_SCHEME),
        check_cameras(needed=v4l2_device(source)),
        check_edgetpu(),
    ]
    if model is not None:
        checks.append(check_model(model, **(model_options or {})))
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{check.status:<5} {check.name:<10} {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{'':<16} fix: {check.fix}")
    return "\n".join(lines)
