"""The model registry and its architectures."""

import numpy as np
import pytest

from edge.errors import EdgesightError
from train.cli import MODEL_NAMES
from train.models import MODELS, ModelOptions, build_model


def test_the_cli_lists_exactly_the_registered_models():
    assert tuple(MODELS) == MODEL_NAMES


def test_an_unknown_model_is_refused_by_name():
    with pytest.raises(EdgesightError, match="unknown model 'resnet50'; choose one of tiny, resnet8, mobilenetv2"):
        build_model("resnet50", (32, 32, 3), 10)


def test_resnet8_is_the_mlperf_tiny_size():
    model = build_model("resnet8", (32, 32, 3), 10)
    # MLPerf Tiny's reference ResNet-8 for CIFAR-10 has 78,666 parameters.
    assert 77_000 <= model.count_params() <= 80_000
    assert model.output_shape == (None, 10)


def test_width_multiplier_scales_the_model():
    narrow = build_model("tiny", (32, 32, 1), 10, ModelOptions(width=0.5)).count_params()
    wide = build_model("tiny", (32, 32, 1), 10, ModelOptions(width=1.0)).count_params()
    assert narrow < wide / 2.5


def test_mobilenetv2_refuses_sizes_outside_96_to_224():
    with pytest.raises(EdgesightError, match="mobilenetv2 takes 96 to 224 px inputs"):
        build_model("mobilenetv2", (64, 64, 3), 2)


def test_mobilenetv2_loads_a_local_weights_file(tmp_path):
    import keras

    options = ModelOptions(width=0.35)
    source = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    model = build_model("mobilenetv2", (96, 96, 3), 2, ModelOptions(width=0.35, weights=str(path)))
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    for mine, theirs in zip(backbone.weights, source.weights, strict=True):
        assert np.array_equal(mine.numpy(), theirs.numpy())
    assert build_model("mobilenetv2", (96, 96, 1), 2, options).input_shape == (None, 96, 96, 1)


def test_mobilenetv2_weights_errors_are_one_line(tmp_path):
    with pytest.raises(EdgesightError, match="no such weights file"):
        build_model("mobilenetv2", (96, 96, 3), 2, ModelOptions(weights=str(tmp_path / "absent.h5")))
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(EdgesightError, match="--weights needs --color rgb"):
        build_model("mobilenetv2", (96, 96, 1), 2, ModelOptions(weights=str(tmp_path / "w.h5")))
