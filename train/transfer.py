"""Transfer learning from a pretrained backbone, the recipe of the tools people hold this up against.

1. features: the frozen backbone's pooled output for every image, computed once and cached
   (``train.features``): the only pass over the pixels when nothing is fine-tuned;
2. head: the classifier trained on those features for ``epochs``, early stopping on validation loss:
   seconds, not minutes;
3. fine-tune (``fine_tune`` blocks, optional): the top blocks of the backbone unfrozen at a lower learning
   rate, augmentation on, batch-norm layers kept in inference mode (their statistics are ImageNet's and a
   few hundred images would only blur them), early stopping on validation loss; the checkpoint is kept
   only when it beats the head's validation loss, so fine-tuning never makes the run worse on validation.

Each phase is timed; ``fit`` writes the split into the run's metrics and the report shows it.
"""

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from train.cache import PreparedImages
from train.config import BACKBONE_BLOCKS, FitConfig
from train.features import backbone_key, cached_features
from train.models.layers import head
from train.models.mobilenetv2 import BACKBONE, weights_file
from train.pipeline import Batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferResult:
    features_seconds: float
    head_seconds: float
    fine_tune_seconds: float
    head_epochs: int
    fine_tune_epochs: int
    features_cached: bool  # read from the cache rather than computed
    features_file: str

    def summary(self) -> str:
        source = "from the cache" if self.features_cached else "computed"
        text = (
            f"time: features {self.features_seconds:.1f} s ({source}), head {self.head_seconds:.1f} s"
            f" ({self.head_epochs} epochs)"
        )
        if self.fine_tune_epochs:
            text += f", fine-tune {self.fine_tune_seconds:.1f} s ({self.fine_tune_epochs} epochs)"
        return text


def uses_backbone(config: FitConfig) -> bool:
    """Pretrained weights make a run a transfer-learning run."""
    return bool(config.weights)


def train_transfer(
    model: keras.Model,
    config: FitConfig,
    images: PreparedImages,
    train: Batches,
    val: Batches,
    best_file: Path,
    history_file: Path,
) -> TransferResult:
    """Head on cached features, then the optional fine-tuning; the best model ends in ``best_file``.

    ``train`` and ``val`` are the pixel batches of the two splits: their rows, labels and class weights
    select the features of the head, and fine-tuning reads them (augmented) as they are.
    """
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = False
    spec = config.preprocess
    input_shape = (spec.height, spec.width, spec.channels)
    weights = weights_file(config.model_options, input_shape)
    assert weights is not None  # uses_backbone(config)

    started = time.monotonic()
    extractor = keras.Model(model.input, model.get_layer("scores").input)
    bar = keras.utils.Progbar(int(images.readable.sum()), unit_name="image", verbose=1 if sys.stderr.isatty() else 2)
    key = backbone_key(config.model, config.width, input_shape, weights)
    features, features_file, cached = cached_features(images, extractor, key, bar.update)
    features_seconds = time.monotonic() - started

    started = time.monotonic()
    head_epochs, head_loss = _train_head(model, config, features, train, val, history_file)
    model.optimizer.build(model.trainable_variables)  # slots for the head alone, as the file will be read back
    model.save(best_file)
    head_seconds = time.monotonic() - started
    log.info("head: best val_loss %.4f after %d epochs on cached features", head_loss, head_epochs)

    started, tuned = time.monotonic(), 0
    if config.fine_tune:
        tuned = _fine_tune(model, config, train, val, best_file, history_file, head_epochs)
    result = TransferResult(
        features_seconds,
        head_seconds,
        time.monotonic() - started,
        head_epochs,
        tuned,
        cached,
        str(features_file),
    )
    log.info(result.summary())
    return result


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


def _train_head(
    model: keras.Model,
    config: FitConfig,
    features: np.ndarray,
    train: Batches,
    val: Batches,
    history_file: Path,
) -> tuple[int, float]:
    """The classifier fitted on the features, copied into ``model``'s ``scores``; returns (epochs, best val_loss)."""
    classes = model.output_shape[-1]
    inputs = keras.Input((features.shape[1],), name="features")
    head_model = keras.Model(inputs, head(inputs, classes, config.model_options))
    head_model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True)
    weights = None if train.class_weights is None else train.class_weights[train.labels]
    history = head_model.fit(
        features[train.indices],
        _one_hot(train.labels, classes),
        sample_weight=weights,
        validation_data=(features[val.indices], _one_hot(val.labels, classes)),
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=[stop, keras.callbacks.CSVLogger(str(history_file))],
        verbose=0,
    )
    model.get_layer("scores").set_weights(head_model.get_layer("scores").get_weights())
    return len(history.history["loss"]), float(min(history.history["val_loss"]))


def unfreeze_top(backbone: keras.Model, blocks: int) -> int:
    """Make the last ``blocks`` blocks (and the final 1x1 convolution) trainable, batch norm excepted.

    Batch-norm layers stay frozen, which in Keras 3 also runs them in inference mode. Returns the
    number of trainable weights.
    """
    first = BACKBONE_BLOCKS - blocks
    prefix = "expanded_conv" if first == 0 else f"block_{first}_"
    names = [layer.name for layer in backbone.layers]
    start = 0 if blocks == BACKBONE_BLOCKS else next(i for i, n in enumerate(names) if n.startswith(prefix))
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return len(backbone.trainable_weights)


def _fine_tune(
    model: keras.Model,
    config: FitConfig,
    train: Batches,
    val: Batches,
    best_file: Path,
    history_file: Path,
    head_epochs: int,
) -> int:
    """Top blocks and head trained on ``train`` (augmented) at ``fine_tune_learning_rate``; returns the epochs run."""
    unfreeze_top(model.get_layer(BACKBONE), config.fine_tune)
    model.compile(
        optimizer=keras.optimizers.Adam(config.fine_tune_learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    start_loss = float(model.evaluate(val, verbose=0)[0])
    log.info(
        "fine-tuning the top %d block(s): %d trainable parameters, learning rate %g, from val_loss %.4f",
        config.fine_tune,
        sum(int(np.prod(w.shape)) for w in model.trainable_weights),
        config.fine_tune_learning_rate,
        start_loss,
    )
    history = model.fit(
        train,
        validation_data=val,
        initial_epoch=head_epochs,
        epochs=head_epochs + config.fine_tune_epochs,
        callbacks=[
            keras.callbacks.ModelCheckpoint(best_file, save_best_only=True, initial_value_threshold=start_loss),
            keras.callbacks.EarlyStopping(patience=config.patience),
            keras.callbacks.CSVLogger(str(history_file), append=True),
        ],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return len(history.history["loss"])
