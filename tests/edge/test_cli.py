"""The device command end to end, on a model trained by the test session, in real subprocesses."""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import BIN, assert_one_line_error, blank_png, free_port, run_cli, write_video

pytestmark = pytest.mark.slow


def digit_frame(image_path: Path, side: int = 128) -> np.ndarray:
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST)


def test_classify_a_class_folder_reaches_095_on_held_out_digits(digits_run, digits_bundle, tmp_path):
    held_out = tmp_path / "held_out"
    for example in digits_run.examples("test"):
        target = held_out / example.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(example.path, target)
    result = run_cli("edgesight", "classify", "--model", str(digits_bundle), str(held_out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(digits_run.examples("test"))
    assert [line["path"] for line in lines] == sorted(line["path"] for line in lines)
    first = lines[0]
    assert set(first) == {"path", "label", "score", "topk", "latency_ms"}
    assert len(first["topk"]) == 3 and first["topk"][0] == [first["label"], first["score"]]
    assert 0 <= first["score"] <= 1 and first["latency_ms"] > 0
    correct = sum(Path(line["path"]).parent.name == line["label"] for line in lines)
    assert correct / len(lines) >= 0.95


def test_classify_skips_and_counts_undecodable_files(digits_bundle, digits_dir, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    good = sorted((digits_dir / "7").iterdir())[0]
    result = run_cli("edgesight", "classify", "--model", str(digits_bundle), str(tmp_path / "broken.png"), str(good))
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1
    assert "broken.png: not a decodable image" in result.stderr
    assert "1 of 2 images skipped" in result.stderr


def test_run_prints_one_line_per_video_frame(digits_run, digits_bundle, tmp_path):
    examples = digits_run.examples("test")[:40]
    write_video(tmp_path / "digits.mp4", [digit_frame(e.path) for e in examples])
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "digits.mp4"\n[model]\npath = "{digits_bundle}"\ntop_k = 2\n')
    result = run_cli("edgesight", "run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["frame"] for line in lines] == list(range(len(examples)))
    assert set(lines[0]) == {"ts", "frame", "label", "score", "topk", "latency_ms"} | {
        "frame_age_ms",
        "state",
        "state_changed",
    }
    assert len(lines[0]["topk"]) == 2
    assert all(b["ts"] >= a["ts"] for a, b in itertools.pairwise(lines))
    expected = [digits_run.classes[e.label] for e in examples]
    accuracy = np.mean([line["label"] == label for line, label in zip(lines, expected, strict=True)])
    assert accuracy >= 0.95


def test_run_writes_jsonl_to_a_file(digits_dir, digits_bundle, tmp_path):
    config = tmp_path / "edgesight.toml"
    source = digits_dir / "3"
    config.write_text(f'[source]\nuri = "{source}"\n[model]\npath = "{digits_bundle}"\n[output]\njsonl = "out.jsonl"\n')
    result = run_cli("edgesight", "run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == len(list((digits_dir / "3").iterdir()))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_endless_source_stops_cleanly_on_signal(digits_dir, digits_bundle, tmp_path, signum):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "{digits_dir / "5"}"\nloop = true\n[model]\npath = "{digits_bundle}"\n')
    process = subprocess.Popen(
        [str(BIN / "edgesight"), "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # readline() takes only the first line off the pipe, communicate() reads all the rest
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # stdout as systemd's unit sets it up
    )
    try:
        first = process.stdout.readline()  # blocks until the daemon classifies its first frame
        assert json.loads(first)["frame"] == 0
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 0, stderr
    assert f"{signal.Signals(signum).name} received, stopping" in stderr
    assert "Traceback" not in stderr
    assert stdout.endswith("\n") or not stdout  # the last line was finished before the daemon exited
    frames = [json.loads(line)["frame"] for line in [first, *stdout.splitlines()]]  # every line is whole
    assert frames == sorted(set(frames))  # and in order (stale frames are skipped, never repeated)


def test_missing_bundle_is_one_line_error(tmp_path):
    result = run_cli("edgesight", "classify", "--model", str(tmp_path / "nope"), str(tmp_path))
    assert_one_line_error(result, 66, "no such bundle directory")


def test_corrupt_model_is_one_line_error(digits_bundle, digits_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    model = bundle / "model.tflite"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    image = sorted((digits_dir / "1").iterdir())[0]
    assert_one_line_error(run_cli("edgesight", "classify", "--model", str(bundle), str(image)), 65, "sha256")

    # Even with a matching checksum, an unloadable flatbuffer is refused in one line.
    import hashlib

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["model_sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("edgesight", "classify", "--model", str(bundle), str(image))
    assert_one_line_error(result, 65, "model.tflite: not a loadable TFLite model")


def test_golden_check_refuses_a_bundle_whose_preprocessing_was_altered(digits_bundle, digits_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["preprocess"]["mean"] = [60.0]  # the device would normalize differently from training
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    image = sorted((digits_dir / "1").iterdir())[0]
    result = run_cli("edgesight", "classify", "--model", str(bundle), str(image))
    assert_one_line_error(result, 65, "golden check failed")


def test_an_edited_golden_image_is_reported_as_a_modified_bundle(digits_bundle, digits_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    golden = sorted((bundle / "golden").iterdir())[0]
    cv2.imwrite(str(golden), 255 - cv2.imread(str(golden)))  # a person "fixed" the sample
    image = sorted((digits_dir / "1").iterdir())[0]
    result = run_cli("edgesight", "classify", "--model", str(bundle), str(image))
    assert_one_line_error(result, 65, f"golden/{golden.name}: golden sample changed", "the bundle was modified")
    assert "does not reproduce" not in result.stderr


def test_an_old_bundle_without_golden_hashes_loads_and_its_failed_check_names_both_causes(
    digits_bundle, digits_dir, tmp_path
):
    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for sample in manifest["golden"]:
        sample.pop("sha256")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    image = sorted((digits_dir / "1").iterdir())[0]
    assert run_cli("edgesight", "classify", "--model", str(bundle), str(image)).returncode == 0
    golden = sorted((bundle / "golden").iterdir())[0]
    cv2.imwrite(str(golden), 255 - cv2.imread(str(golden)))
    result = run_cli("edgesight", "classify", "--model", str(bundle), str(image))
    assert_one_line_error(result, 65, "golden check failed", "or the file was edited")


def test_unknown_config_key_exits_78(digits_bundle, tmp_path):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "x.mp4"\nframerate = 5\n[model]\npath = "{digits_bundle}"\n')
    assert_one_line_error(run_cli("edgesight", "run", "--config", str(config)), 78, ":3: [source] framerate")
    assert_one_line_error(run_cli("edgesight", "check", "--config", str(config)), 78, "framerate is not a known key")


def test_missing_source_is_one_line_error(digits_bundle, tmp_path):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "absent.mp4"\n[model]\npath = "{digits_bundle}"\n')
    assert_one_line_error(run_cli("edgesight", "run", "--config", str(config)), 66, "absent.mp4")


def test_every_command_has_help_with_an_example():
    for args in ([], ["classify"], ["run"], ["check"], ["doctor"]):
        result = run_cli("edgesight", *args, "--help")
        assert result.returncode == 0 and "example" in result.stdout, args


def test_importing_the_device_cli_does_not_import_tensorflow():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import edge.cli, edge.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "cv2" in imported  # the check sees real imports
    assert not imported & {"tensorflow", "keras", "tf_keras"}


def test_check_validates_model_and_source_without_running(digits_bundle, camera_clip, tmp_path):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "{camera_clip}"\n[model]\npath = "{digits_bundle}"\n')
    result = run_cli("edgesight", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "golden samples agree" in result.stdout and f"video file {camera_clip}" in result.stdout
    config.write_text(config.read_text() + '[results]\nsmoothing = "median"\n')
    result = run_cli("edgesight", "check", "--config", str(config))
    assert_one_line_error(result, 78, ":6: [results] smoothing must be one of none, ema, majority")


def test_run_a_plain_tflite_with_labels(digits_tflite, digits_dir, tmp_path):
    config = tmp_path / "edgesight.toml"
    model = digits_tflite["uint8"]
    config.write_text(f'[source]\nuri = "{digits_dir / "6"}"\n[model]\npath = "{model}"\n')
    result = run_cli("edgesight", "run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    assert len(labels) == len(list((digits_dir / "6").iterdir())) and labels.count("6") / len(labels) >= 0.95


def test_classify_skips_an_image_whose_header_declares_too_many_pixels(digits_bundle, digits_dir, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(blank_png(6000, 5000))  # 29 KB that decode to 30 million pixels
    good = sorted((digits_dir / "7").iterdir())[0]
    result = run_cli("edgesight", "classify", "--model", str(digits_bundle), str(bomb), str(good))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(good)]
    skipped = [line for line in result.stderr.splitlines() if "bomb.png" in line]
    assert len(skipped) == 1 and "6000x5000 pixels, over the limit of 24000000 pixels" in skipped[0]
    assert "raise --max-pixels" in skipped[0] and "1 of 2 images skipped" in result.stderr
    raised = run_cli("edgesight", "classify", "--model", str(digits_bundle), "--max-pixels", "30000000", str(bomb))
    assert raised.returncode == 0 and json.loads(raised.stdout)["path"] == str(bomb)


@pytest.mark.parametrize(
    "args",
    [
        ["edgesight", "classify", "photo.jpg"],  # no --model
        ["edgesight", "no-such-command"],
        ["edgesight", "run"],
        ["edgesight", "classify", "--model", "m.tflite", "--top-k", "three", "x.jpg"],
        ["edgesight", "classify", "--model", "m.tflite"],  # no images
        ["edgesight", "classify", "--model", "bundle", "--labels", "l.txt", "x.jpg"],  # labels for a bundle
        ["edgesight-train", "fit"],
        ["edgesight-train", "quantize", "run", "--out", "b", "--max-drop", "x"],
    ],
    ids=["missing-flag", "unknown-command", "run-without-config", "bad-int", "no-images", "labels-bundle",
         "train-missing-args", "train-bad-float"],
)  # fmt: skip
def test_usage_errors_exit_64_as_documented(args):
    result = run_cli(*args)
    assert result.returncode == 64, (result.returncode, result.stderr)
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_classify_a_plain_tflite_with_labels_mean_and_std_flags(digits_tflite, digits_dir, tmp_path):
    """As pycoral's and TensorFlow's examples are run: --model, --labels, --input, and the float model's
    normalization given on the command line (our networks take raw pixels: mean 0, std 1)."""
    model = tmp_path / "model" / "digits_float.tflite"
    model.parent.mkdir()
    shutil.copy(digits_tflite["float32"], model)  # no labels.txt beside it
    labels = tmp_path / "names.txt"
    labels.write_text("".join(f"digit-{d}\n" for d in range(10)))
    images = sorted((digits_dir / "6").iterdir())[:20]
    inputs = [arg for image in images for arg in ("--input", str(image))]
    result = run_cli("edgesight", "classify", "--model", str(model), *inputs)
    assert_one_line_error(result, 66, "no labels", "--labels")
    result = run_cli(
        "edgesight", "classify", "--model", str(model), "--labels", str(labels), "--mean", "0", "--std", "1", *inputs
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(image) for image in images]
    assert sum(line["label"] == "digit-6" for line in lines) >= 19
    result = run_cli("edgesight", "classify", "--model", str(model), "-l", str(labels),
                     "--mean", "0", "0", "--std", "1", "-i", str(images[0]))  # fmt: skip
    assert_one_line_error(result, 64, "--mean and --std take one value, or one per channel")


def write_config(path: Path, source: str, bundle: Path, extra: str = "") -> Path:
    path.write_text(f'[source]\nuri = "{source}"\ntimeout_s = 1.0\n[model]\npath = "{bundle}"\n{extra}')
    return path


def test_check_fails_as_run_would_on_missing_secrets_and_sources_that_do_not_answer(
    digits_bundle, digits_dir, tmp_path
):
    good = str(digits_dir / "2")
    config = write_config(tmp_path / "ok.toml", good, digits_bundle, '[http]\nport = 0\n[output]\njsonl = ""\n')
    result = run_cli("edgesight", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "10 golden samples agree" in result.stdout and "(a 32x32 frame read)" in result.stdout
    assert "outputs: http 127.0.0.1:0" in result.stdout

    cases = {
        "mqtt-password": (good, '[mqtt]\nusername = "pi"\npassword_file = "absent"\n', 78, "[mqtt] password_file"),
        "http-token": (good, '[http]\ntoken_file = "absent"\n', 78, "[http] token_file"),
        "camera": ("/dev/video99", "", 69, "camera /dev/video99 is not there"),
        "mjpeg": (f"http://127.0.0.1:{free_port()}/stream.mjpg", "", 69, "cannot be opened"),
        "rtsp": (f"rtsp://127.0.0.1:{free_port()}/live", "", 69, "cannot be opened"),
        "picamera2": ("picamera2", "", 69, "picamera2 does not import"),
    }
    for name, (source, extra, code, fragment) in cases.items():
        config = write_config(tmp_path / f"{name}.toml", source, digits_bundle, extra)
        checked = run_cli("edgesight", "check", "--config", str(config))
        assert_one_line_error(checked, code, fragment)
        if code == 78:  # what `run` does with the same config: refuse it with the same code
            assert_one_line_error(run_cli("edgesight", "run", "--config", str(config)), 78, fragment)
