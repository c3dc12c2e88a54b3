"""The benchmark models, built from the train package's registry with random weights.

Built by ``python -m bench.models BUILD_DIR NAME...`` in a process of its own, so that TensorFlow is
never loaded into the processes being measured. Each model is an int8 bundle (``bundle/``) and a
float ``float.tflite``, cached under a key of everything that determines them.
"""

import argparse
import datetime
import hashlib
import inspect
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SEED = 0
CALIBRATION_IMAGES = 16  # random weights: the calibration set only sets the activation ranges


@dataclass(frozen=True)
class BenchModel:
    name: str  # the train registry's architecture name
    size: int
    color: str
    classes: int

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    @property
    def title(self) -> str:
        return f"{self.name} {self.size}×{self.size} {self.color}"


MODELS = {
    "tiny": BenchModel("tiny", 32, "grayscale", 10),  # the digits recipe
    "resnet8": BenchModel("resnet8", 32, "rgb", 10),
    "mobilenetv2": BenchModel("mobilenetv2", 224, "rgb", 1000),  # alpha 1.0, ImageNet's head size
}


def cache_key(model: BenchModel) -> str:
    """The inputs a built model depends on: its shape, the code that builds and converts it, TensorFlow."""
    from importlib.metadata import version

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(repr((model, SEED, CALIBRATION_IMAGES, version("tensorflow"))).encode())
    digest.update(inspect.getsource(build_model_files).encode())
    for path in [*sorted((root / "train" / "models").glob("*.py")), root / "train" / "quantize.py"]:
        digest.update(path.read_bytes())
    return f"{model.name}-{model.size}-{digest.hexdigest()[:12]}"


def model_dir(build: Path, model: BenchModel) -> Path:
    return build / "models" / cache_key(model)


def is_built(path: Path) -> bool:
    return (path / "bundle" / "manifest.json").is_file() and (path / "float.tflite").is_file()


def build_model_files(model: BenchModel, out: Path) -> None:
    """Write ``out/bundle`` (int8, no golden samples) and ``out/float.tflite``."""
    import keras
    import tensorflow as tf

    from edge.bundle import Manifest, write_bundle
    from edge.preprocess import PreprocessSpec
    from edge.runtime import Model
    from train.models import build_model
    from train.quantize import convert
    from train.run import versions

    keras.utils.set_random_seed(SEED)
    shape = (model.size, model.size, model.channels)
    network = build_model(model.name, shape, model.classes)
    calibration = np.random.default_rng(SEED).integers(0, 256, (CALIBRATION_IMAGES, *shape)).astype(np.float32)
    int8 = convert(network, calibration, "int8")
    float_model = tf.lite.TFLiteConverter.from_keras_model(network).convert()
    out.mkdir(parents=True, exist_ok=True)
    (out / "float.tflite").write_bytes(float_model)
    probe_path = out / "probe.tflite"
    probe_path.write_bytes(int8)
    probe = Model(probe_path)
    manifest = Manifest(
        name=f"bench-{model.name}",
        version=datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S"),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        labels=tuple(f"class{i}" for i in range(model.classes)),
        preprocess=PreprocessSpec(height=model.size, width=model.size, color=model.color),
        input=probe.input,
        output=probe.output,
        scores="probabilities",
        model_sha256=hashlib.sha256(int8).hexdigest(),
        training={"architecture": model.name, "weights": "random", "seed": SEED},
        versions=versions(),
    )
    write_bundle(out / "bundle", int8, manifest, {})
    probe_path.unlink()


def linear_bundle(path: Path) -> Path:
    """The same model with ``interpolation = "linear"`` in its contract: the usual loop's resize."""
    from edge.bundle import load_bundle, write_bundle

    out = path / "bundle-linear"
    if not (out / "manifest.json").is_file():
        bundle = load_bundle(path / "bundle")
        manifest = replace(bundle.manifest, preprocess=replace(bundle.manifest.preprocess, interpolation="linear"))
        write_bundle(out, bundle.model_path.read_bytes(), manifest, {})
    return out.resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the cache directory (build/bench)")
    parser.add_argument("names", nargs="+", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names:
        model = MODELS[name]
        out = model_dir(args.build, model)
        if is_built(out):
            continue
        log.info("building %s into %s", model.title, out)
        build_model_files(model, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
