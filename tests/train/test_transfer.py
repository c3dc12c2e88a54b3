"""Transfer learning: ImageNet weights through Keras's cache, the head on cached features, fine-tuning."""

import csv
import json
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.classifier import Classifier
from edge.errors import EdgesightError
from tests.helpers import (
    BACKBONE_SIZE,
    BACKBONE_WIDTH,
    NO_NETWORK,
    assert_one_line_error,
    run_cli,
    write_legacy_backbone,
)
from train.config import FitConfig
from train.fit import fit
from train.models import ModelOptions, build_model
from train.models.pretrained import mobilenetv2_file, mobilenetv2_weights
from train.quantize import quantize
from train.transfer import unfreeze_top

TRANSFER = {
    "model": "mobilenetv2",
    "size": BACKBONE_SIZE,
    "width": BACKBONE_WIDTH,
    "color": "rgb",
    "flip": "none",
    "weights": "imagenet",
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Three scenes a fixed camera could see, 40 frames each: shifted a little, lit differently, noisy."""
    root = tmp_path_factory.mktemp("data") / "scenes"
    rng = np.random.default_rng(7)
    for name in ("garage", "street", "garden"):
        scene = cv2.resize(rng.integers(0, 256, (6, 8, 3), np.uint8), (200, 150), interpolation=cv2.INTER_CUBIC)
        (root / name).mkdir(parents=True)
        for i in range(40):
            x, y = int(rng.integers(0, 40)), int(rng.integers(0, 30))
            frame = scene[y : y + 120, x : x + 160] * rng.uniform(0.7, 1.3) + rng.normal(0, 20, (120, 160, 3))
            cv2.imwrite(str(root / name / f"{i:02d}.jpg"), frame.clip(0, 255).astype(np.uint8))
    return root


@pytest.fixture
def offline_keras(keras_home, monkeypatch):
    """The seeded Keras cache, with every download bound to fail: a test passes only if the cache is read."""
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    for name, value in NO_NETWORK.items():
        monkeypatch.setenv(name, value)
    return keras_home


def seeded_weights(keras_home) -> dict[str, list[np.ndarray]]:
    path = keras_home / "models" / mobilenetv2_file(BACKBONE_WIDTH, BACKBONE_SIZE)
    with h5py.File(path, "r") as f:
        return {
            name: [np.asarray(f[name][w]) for w in f[name].attrs["weight_names"]] for name in f.attrs["layer_names"]
        }


def backbone_weights(model) -> dict[str, list[np.ndarray]]:
    backbone = model.get_layer("backbone")
    return {
        layer.name: [w.numpy() for w in layer.trainable_weights + layer.non_trainable_weights]
        for layer in backbone.layers
        if layer.weights
    }


def test_keras_names_every_published_backbone_file():
    assert mobilenetv2_file(0.35, 96) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert mobilenetv2_file(0.5, 160) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_160_no_top.h5"
    assert mobilenetv2_file(1, 224) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert mobilenetv2_file(1.4, 192) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_192_no_top.h5"
    # Other square sizes get the 224 px file, as keras.applications.MobileNetV2 picks it.
    assert mobilenetv2_file(0.75, 112) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5"
    with pytest.raises(
        EdgesightError,
        match=r"Keras publishes MobileNetV2 weights for --width 0\.35, 0\.5, 0\.75, 1, 1\.3, 1\.4 \(got 0\.6\)",
    ):
        mobilenetv2_file(0.6, 96)


def test_imagenet_weights_come_from_the_keras_cache_without_a_download(offline_keras):
    path = mobilenetv2_weights(BACKBONE_WIDTH, BACKBONE_SIZE)
    assert path == offline_keras / "models" / mobilenetv2_file(BACKBONE_WIDTH, BACKBONE_SIZE)
    model = build_model("mobilenetv2", (96, 96, 3), 2, ModelOptions(width=BACKBONE_WIDTH, weights="imagenet"))
    seeded, built = seeded_weights(offline_keras), backbone_weights(model)
    assert sum(len(w) for w in built.values()) == sum(len(w) for w in seeded.values()) == 260
    for name, weights in built.items():
        assert all(np.array_equal(a, b) for a, b in zip(weights, seeded[name], strict=True)), name


def test_imagenet_weights_offline_is_one_line_naming_the_file_and_the_cache_folder(tmp_path, small_digits):
    home = tmp_path / "keras"
    env = {"KERAS_HOME": str(home), **NO_NETWORK}
    args = ("fit", str(small_digits), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))
    result = run_cli("edgesight-train", *args, *_flags(TRANSFER), env=env)
    name = mobilenetv2_file(BACKBONE_WIDTH, BACKBONE_SIZE)
    assert_one_line_error(result, 69, f"cannot download {name}", f"copy that file into {home / 'models'}/")
    assert not (home / "models" / name).exists()  # no partial file left for the next run to trust


def test_a_weights_file_of_another_width_is_a_one_line_error(tmp_path, small_digits):
    import keras

    other = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.5, include_top=False, weights=None)
    path = write_legacy_backbone(other, tmp_path / "alpha-0.5.h5")
    args = ("fit", str(small_digits), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))
    result = run_cli("edgesight-train", *args, *_flags(TRANSFER | {"weights": str(path)}))
    assert_one_line_error(result, 65, f"{path}: not the weights of a MobileNetV2 backbone", "--width 0.35")
    assert len(next(line for line in result.stderr.splitlines() if ": error: " in line)) < 500


def _flags(settings: dict) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def test_unfreezing_the_top_blocks_keeps_batch_norm_frozen():
    model = build_model("mobilenetv2", (96, 96, 3), 2, ModelOptions(width=0.35))
    backbone = model.get_layer("backbone")
    unfreeze_top(backbone, 2)
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable == {
        "block_15_expand",
        "block_15_depthwise",
        "block_15_project",
        "block_16_expand",
        "block_16_depthwise",
        "block_16_project",
        "Conv_1",
    }
    unfreeze_top(backbone, 17)
    assert not any(layer.trainable for layer in backbone.layers if "_bn" in layer.name or layer.name.endswith("BN"))
    assert backbone.get_layer("Conv1").trainable


@pytest.mark.slow
def test_head_trains_on_cached_features_and_the_backbone_stays_imagenet(offline_keras, scenes, cache_dir, tmp_path):
    config = FitConfig(data=str(scenes), out=str(tmp_path / "first"), cache_dir=str(cache_dir), **TRANSFER)
    run = fit(config)
    transfer = json.loads((run.path / "metrics.json").read_text())["transfer"]
    assert not transfer["features_cached"] and transfer["fine_tune_epochs"] == 0
    features = np.load(transfer["features_file"])
    assert features.shape == (120, 1280) and features.std(axis=0).mean() > 0.01  # they tell images apart
    # The frozen backbone of the trained model is the seeded file, weight for weight.
    seeded, trained = seeded_weights(offline_keras), backbone_weights(run.load_model())
    for name, weights in trained.items():
        assert all(np.array_equal(a, b) for a, b in zip(weights, seeded[name], strict=True)), name
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.8, metrics

    # Another head on the same backbone, contract and images: the features come from the cache.
    again = fit(replace(config, out=str(tmp_path / "second"), dropout=0.5))
    repeated = json.loads((again.path / "metrics.json").read_text())["transfer"]
    assert repeated["features_cached"] and repeated["features_file"] == transfer["features_file"]


@pytest.mark.slow
def test_fine_tuning_keeps_batch_norm_statistics_and_passes_the_int8_gate(offline_keras, scenes, cache_dir, tmp_path):
    config = FitConfig(
        data=str(scenes),
        out=str(tmp_path / "run"),
        cache_dir=str(cache_dir),
        **TRANSFER | {"fine_tune": 2, "fine_tune_epochs": 1, "fine_tune_learning_rate": 1e-3},
    )
    run = fit(config)
    transfer = json.loads((run.path / "metrics.json").read_text())["transfer"]
    assert transfer["fine_tune_epochs"] == 1 and transfer["fine_tune_seconds"] > 0
    with (run.path / "history.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0]  # the head has no epochs
    seeded, tuned = seeded_weights(offline_keras), backbone_weights(run.load_model())
    for name, weights in tuned.items():
        if "bn" in name.lower() or not name.startswith(("block_15", "block_16", "Conv_1")):
            assert all(np.array_equal(a, b) for a, b in zip(weights, seeded[name], strict=True)), name

    result = quantize(run.path, tmp_path / "bundle", max_drop=5.0, representative=100)
    bundle = load_bundle(tmp_path / "bundle")
    assert Classifier(bundle).golden_check() >= 1
    assert result.int8_accuracy >= 0.8, result


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--weights", "imagenet", "--width", "0.6"], "width: Keras publishes ImageNet MobileNetV2 weights for 0.35"),
        (["--fine-tune", "2"], "fine_tune needs a pretrained backbone (--weights imagenet or a file)"),
        (["--weights", "imagenet", "--fine-tune", "18"], "fine_tune counts backbone blocks from the top: 0..17"),
        (["--weights", "imagenet", "--model", "tiny"], "weights: only mobilenetv2 has a pretrained backbone"),
    ],
)
def test_transfer_settings_that_cannot_work_are_config_errors(tmp_path, flags, message):
    data = tmp_path / "data"
    result = run_cli(
        "edgesight-train", "fit", str(data), "--out", str(tmp_path / "run"), "--model", "mobilenetv2", "--size", "96",
        *flags,
    )  # fmt: skip
    assert_one_line_error(result, 78, message)


def test_the_features_key_names_the_backbone_file_its_width_and_input(tmp_path):
    from train.features import backbone_key

    (tmp_path / "a.h5").write_bytes(b"one backbone")
    (tmp_path / "b.h5").write_bytes(b"another backbone")
    key = backbone_key("mobilenetv2", 0.35, (96, 96, 3), tmp_path / "a.h5")
    assert key == backbone_key("mobilenetv2", 0.35, (96, 96, 3), tmp_path / "a.h5")
    assert key != backbone_key("mobilenetv2", 0.35, (96, 96, 3), tmp_path / "b.h5")
    assert key != backbone_key("mobilenetv2", 0.5, (96, 96, 3), tmp_path / "a.h5")
    assert key != backbone_key("mobilenetv2", 0.35, (128, 128, 3), tmp_path / "a.h5")


def test_a_transfer_run_is_not_resumed_but_run_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    settings = {"data": str(tmp_path / "data"), "out": str(run), "model": "mobilenetv2", "size": 96}
    (run / "config.json").write_text(json.dumps(settings | {"weights": "imagenet", "width": 0.35}))
    result = run_cli("edgesight-train", "fit", str(tmp_path / "data"), "--out", str(run), "--resume", env=NO_NETWORK)
    assert_one_line_error(result, 78, "a transfer-learning run does not resume; run it again without --resume")
