"""The resolved settings of a training run, as data: read from flags or JSON, written into the run."""

from dataclasses import dataclass, fields

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.preprocess import CONTRACT_VERSION, PreprocessSpec
from train.augment import Augment

DEFAULT_EPOCHS = 30
# MobileNetV2's inverted-residual blocks (expanded_conv, block_1 .. block_16): what --fine-tune counts.
BACKBONE_BLOCKS = 17
# The widths Keras publishes ImageNet MobileNetV2 weights for (keras/src/applications/mobilenet_v2.py).
IMAGENET_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


@dataclass(frozen=True)
class ModelOptions:
    width: float = 1.0  # multiplies every layer's filters (MobileNetV2's alpha)
    dropout: float = 0.2  # before the classifier
    weight_decay: float = 0.0  # L2 on convolution and dense kernels
    weights: str = ""  # the backbone's pretrained weights (mobilenetv2): "imagenet" (Keras's cache) or a file


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
    weights: str = ""  # pretrained backbone: "imagenet" or a file; makes the run transfer learning
    # Transfer learning: the head on cached backbone features, then the top blocks fine-tuned (0 = head only).
    fine_tune: int = 0
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-4
    # Optimisation (of every layer; in transfer learning, patience, batch size and label smoothing serve
    # fine-tuning, and the head is a logistic regression fitted to convergence).
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
        if self.weights and self.model != "mobilenetv2":
            found.append(f"weights: only mobilenetv2 has a pretrained backbone (got model {self.model!r})")
        if self.weights == "imagenet" and self.width not in IMAGENET_WIDTHS:
            widths = ", ".join(f"{w:g}" for w in IMAGENET_WIDTHS)
            found.append(f"width: Keras publishes ImageNet MobileNetV2 weights for {widths} (got {self.width:g})")
        if self.fine_tune and not self.weights:
            found.append("fine_tune needs a pretrained backbone (--weights imagenet or a file)")
        if not 0 <= self.fine_tune <= BACKBONE_BLOCKS:
            found.append(f"fine_tune counts backbone blocks from the top: 0..{BACKBONE_BLOCKS} (got {self.fine_tune})")
        for name in ("epochs", "batch_size", "fine_tune_epochs"):
            if getattr(self, name) < 1:
                found.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("learning_rate", "fine_tune_learning_rate"):
            if getattr(self, name) <= 0:
                found.append(f"{name} must be positive (got {getattr(self, name)})")
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


def check(config: FitConfig) -> None:
    """Refuse settings that cannot train in one line (exit 78); cheap, so the command line checks before Keras loads."""
    problems = config.problems()
    if problems:
        raise EdgesightError(f"invalid training setting: {problems[0]}", EXIT_CONFIG)


def run_config_from_dict(data: dict, where: str) -> FitConfig:
    """A run directory's ``config.json``: one written before the contract had versions trained on version 1."""
    return config_from_dict({"preprocess_version": 1, **data}, where)
