"""The resolved settings of a training run, as data: read from flags or JSON, written into the run."""

from dataclasses import dataclass, fields

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.preprocess import CONTRACT_VERSION, PreprocessSpec
from train.augment import Augment

DEFAULT_EPOCHS = 30


@dataclass(frozen=True)
class ModelOptions:
    width: float = 1.0  # multiplies every layer's filters (MobileNetV2's alpha)
    dropout: float = 0.2  # before the classifier
    weight_decay: float = 0.0  # L2 on convolution and dense kernels
    weights: str = ""  # a local weights file for the backbone (mobilenetv2); nothing downloads


@dataclass(frozen=True)
class FitConfig:
    """Everything that determines a run; written resolved into the run directory."""

    data: str
    out: str
    model: str = "tiny"
    # Preprocessing contract (recorded in the bundle, applied identically on the device).
    size: int = 64
    color: str = "rgb"
    resize: str = "squash"
    interpolation: str = "area"
    denoise: float = 0.0
    blur: int = 0
    clahe: float = 0.0
    sharpen: float = 0.0
    preprocess_version: int = CONTRACT_VERSION  # edge.preprocess.CONTRACT_VERSIONS
    # Model.
    width: float = 1.0
    dropout: float = 0.2
    weight_decay: float = 0.0
    weights: str = ""
    # Optimisation.
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    patience: int = 6
    balance: bool = True  # class weights from the training split's counts
    # Augmentation (training batches only).
    augment: float = 1.0
    flip: str = "horizontal"
    rotate: float = 10.0
    shift: float = 0.1
    zoom: float = 0.1
    brightness: float = 0.15
    contrast: float = 0.2
    # Data.
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    min_per_class: int = 5
    cache_dir: str = ""
    seed: int = 0

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec(
            height=self.size,
            width=self.size,
            color=self.color,
            resize=self.resize,
            interpolation=self.interpolation,
            denoise=self.denoise,
            blur=self.blur,
            clahe=self.clahe,
            sharpen=self.sharpen,
            version=self.preprocess_version,
        )

    @property
    def augmentation(self) -> Augment:
        return Augment(self.augment, self.flip, self.rotate, self.shift, self.zoom, self.brightness, self.contrast)

    @property
    def model_options(self) -> ModelOptions:
        return ModelOptions(self.width, self.dropout, self.weight_decay, self.weights)

    def problems(self) -> list[str]:
        found = self.preprocess.problems() + self.augmentation.problems()
        if not (self.val_fraction > 0 and self.test_fraction >= 0 and self.val_fraction + self.test_fraction < 1):
            found.append("val_fraction must be positive, test_fraction not negative, their sum below 1")
        if not 0 <= self.label_smoothing < 1:
            found.append(f"label_smoothing must be within 0..1 (got {self.label_smoothing})")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                found.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.learning_rate <= 0:
            found.append(f"learning_rate must be positive (got {self.learning_rate})")
        return found


def config_from_dict(data: dict, where: str) -> FitConfig:
    """A FitConfig from JSON (config.json, tune's best.json); unknown keys are errors naming the key."""
    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EdgesightError(
            f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}", EXIT_CONFIG
        )
    try:
        return FitConfig(**data)
    except TypeError as e:
        raise EdgesightError(f"{where}: {e}", EXIT_CONFIG) from e


def run_config_from_dict(data: dict, where: str) -> FitConfig:
    """A run directory's ``config.json``: one written before the contract had versions trained on version 1."""
    return config_from_dict({"preprocess_version": 1, **data}, where)
