"""``edgesight doctor`` in a real subprocess: every finding, with fixes for what is missing here."""

import json
import shutil

import pytest

from tests.helpers import run_cli


def test_doctor_reports_platform_runtimes_backends_and_what_is_missing():
    result = run_cli("edgesight", "doctor")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    status = {line.split()[1]: line.split()[0] for line in lines if not line.startswith(" ")}
    assert set(status) == {"platform", "numpy", "opencv", "runtime", "picamera2", "cameras", "edgetpu"}
    assert status["runtime"] == "ok" and "using ai-edge-litert" in result.stdout
    assert "FFMPEG" in next(line for line in lines if line.split()[1] == "opencv")
    # No Pi camera stack and no Coral here: reported as warnings, each with its fix.
    assert status["picamera2"] == "warn" and "--system-site-packages" in result.stdout
    assert status["edgetpu"] == "warn" and "fix: install libedgetpu1-std" in result.stdout


@pytest.mark.slow
def test_doctor_loads_the_model_and_runs_its_golden_check(digits_bundle, tmp_path):
    result = run_cli("edgesight", "doctor", "--model", str(digits_bundle), "--json")
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["model"]["status"] == "ok" and "golden samples agree" in checks["model"]["detail"]

    broken = tmp_path / "bundle"
    shutil.copytree(digits_bundle, broken)
    (broken / "model.tflite").write_bytes(b"\x00" * 64)
    result = run_cli("edgesight", "doctor", "--model", str(broken))
    assert result.returncode == 69
    assert "fail  model" in result.stdout and "sha256" in result.stdout
    assert "1 problem(s) stop the daemon here: model" in result.stderr and "Traceback" not in result.stderr


def test_doctor_fails_when_the_configs_source_needs_what_is_missing(tmp_path):
    """Without --config a missing picamera2 is a warning; with a config that reads the Pi camera, or a V4L2
    device that does not exist, it is a failure (exit 69), as `run` would fail there."""
    for uri, name in (("picamera2", "picamera2"), ("/dev/video99", "cameras")):
        config = tmp_path / "edgesight.toml"
        config.write_text(f'[source]\nuri = "{uri}"\n[model]\npath = "{tmp_path / "bundle"}"\n')
        result = run_cli("edgesight", "doctor", "--config", str(config), "--json")
        assert result.returncode == 69, result.stderr
        checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
        assert checks[name]["status"] == "fail" and checks[name]["fix"], checks[name]
        assert f"stop the daemon here: {name}, model" in result.stderr  # the absent bundle fails too
