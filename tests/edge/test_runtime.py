"""The runtime on real models the session converts: three I/O types, plain .tflite files, Edge TPU."""

import importlib
import shutil

import numpy as np
import pytest

from edge.classifier import load_classifier
from edge.config import ModelConfig
from edge.errors import EXIT_DATA, EXIT_UNAVAILABLE, EdgesightError
from edge.images import read_image
from edge.model_source import read_labels
from edge.runtime import EDGETPU_OP, RUNTIMES, Model, available_runtimes, compiled_for_edgetpu

pytestmark = pytest.mark.slow


def plain(path, **kw) -> ModelConfig:
    return ModelConfig(path=str(path), **kw)


def test_float_uint8_and_int8_conversions_agree_on_top1(digits_run, digits_tflite):
    images = [read_image(e.path) for e in digits_run.examples("test")]
    truth = np.asarray([e.label for e in digits_run.examples("test")])
    # Our networks scale pixels inside the graph: the float model takes raw pixels (mean 0, std 1).
    classifiers = {
        "float32": load_classifier(plain(digits_tflite["float32"], mean=(0.0,), std=(1.0,))),
        "uint8": load_classifier(plain(digits_tflite["uint8"])),
        "int8": load_classifier(plain(digits_tflite["int8"])),
    }
    top1 = {}
    for kind, classifier in classifiers.items():
        assert classifier.model.input.dtype == kind and classifier.model.output.dtype == kind
        labels = classifier.manifest.labels
        top1[kind] = np.asarray([labels.index(classifier.classify(image).label) for image in images])
        assert (top1[kind] == truth).mean() >= 0.95, kind
    agreement_uint8 = (top1["uint8"] == top1["float32"]).mean()
    agreement_int8 = (top1["int8"] == top1["float32"]).mean()
    assert agreement_uint8 >= 0.98 and agreement_int8 >= 0.98, (agreement_uint8, agreement_int8)


def test_integer_plain_models_take_raw_pixels_by_default(digits_tflite):
    for kind in ("uint8", "int8"):
        spec = load_classifier(plain(digits_tflite[kind])).manifest.preprocess
        model = Model(digits_tflite[kind])
        # The table maps pixel p to p (uint8) or p - 128 (int8) when the input quantization is (1, zp).
        assert model.input.scale == pytest.approx(1.0)
        assert spec.mean == (model.input.zero_point + (128 if kind == "int8" else 0),) and spec.std == (1.0,)
        assert spec.color == "grayscale" and (spec.height, spec.width) == (32, 32)


def test_labels_file_with_a_leading_background_class(digits_tflite, tmp_path):
    model = tmp_path / "digits.tflite"
    shutil.copy(digits_tflite["int8"], model)
    digits = read_labels(digits_tflite["int8"].with_name("labels.txt"))
    (tmp_path / "labels.txt").write_text("background\n" + "\n".join(digits) + "\n")
    assert load_classifier(plain(model)).manifest.labels == digits
    (tmp_path / "labels.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate(digits)))
    assert load_classifier(plain(model)).manifest.labels == digits  # "0 zero" style lines
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(EdgesightError, match="2 labels for a model with 10 outputs") as error:
        load_classifier(plain(model))
    assert error.value.exit_code == EXIT_DATA
    (tmp_path / "labels.txt").unlink()
    with pytest.raises(EdgesightError, match=r"put a labels\.txt beside the model"):
        load_classifier(plain(model))


def test_float_model_emitting_logits_gets_a_softmax(digits_tflite, digits_dir):
    classifier = load_classifier(plain(digits_tflite["float32"], mean=(0.0,), std=(1.0,)))
    assert classifier.manifest.scores == "auto"  # a plain model does not say: its output is looked at
    result = classifier.classify(read_image(sorted((digits_dir / "4").iterdir())[0]))
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-3) and result.label == "4"


def test_edgetpu_delegate_without_libedgetpu_is_a_clear_error(digits_tflite, tmp_path):
    with pytest.raises(EdgesightError) as error:
        Model(digits_tflite["int8"], delegate="edgetpu")
    assert error.value.exit_code == EXIT_UNAVAILABLE
    assert "libedgetpu.so.1 does not load" in str(error.value) and "libedgetpu1-std" in str(error.value)
    # A model compiled for the Edge TPU carries its custom op: "auto" then needs the delegate too.
    compiled = tmp_path / "digits_edgetpu.tflite"
    compiled.write_bytes(digits_tflite["int8"].read_bytes() + EDGETPU_OP)
    assert compiled_for_edgetpu(compiled) and not compiled_for_edgetpu(digits_tflite["int8"])
    with pytest.raises(EdgesightError, match="needs the Coral Edge TPU"):
        Model(compiled)
    assert Model(compiled, delegate="cpu").input.dtype == "int8"


def test_runtimes_are_tried_in_order_litert_first():
    runtimes = available_runtimes()
    assert [name for name, _ in runtimes] == ["ai-edge-litert", "tflite-runtime", "tensorflow"]
    assert runtimes[0][1][0].isdigit()  # LiteRT imports here, with its version


def test_the_tensorflow_fallback_module_provides_the_interpreter():
    module = importlib.import_module(dict(RUNTIMES)["tensorflow"])
    assert callable(module.Interpreter) and callable(module.load_delegate)
