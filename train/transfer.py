"""Transfer learning from a pretrained backbone, the recipe of the tools people hold this up against.

1. features: the frozen backbone's pooled output for every image, computed once and cached
   (``train.features``): the only pass over the pixels when nothing is fine-tuned;
2. head: a multinomial logistic regression on those features, fitted to convergence by scikit-learn
   (L-BFGS) for a few L2 strengths, the one with the lowest validation loss kept: a linear probe, seconds
   not minutes, and better than a few epochs of SGD stopped early on a noisy validation loss;
3. fine-tune (``fine_tune`` blocks, optional): the top blocks of the backbone unfrozen at a lower learning
   rate, augmentation on, batch-norm layers kept in inference mode (their statistics are ImageNet's and a
   few hundred images would only blur them), early stopping on validation loss; the checkpoint is kept
   only when it beats the head's validation loss, so fine-tuning never makes the run worse on validation.

Each phase is timed: ``fit`` writes the times into the run's ``metrics.json``, and its report shows them.
"""

import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from train.cache import PreparedImages
from train.config import BACKBONE_BLOCKS, FitConfig
from train.features import backbone_key, cached_features
from train.models.mobilenetv2 import BACKBONE, weights_file
from train.pipeline import Batches

log = logging.getLogger(__name__)

# Inverse L2 strengths tried for the head; validation loss picks one. L-BFGS iterations per fit.
HEAD_REGULARIZATION = (0.01, 0.1, 1.0, 10.0)
HEAD_ITERATIONS = 1000


@dataclass(frozen=True)
class TransferResult:
    features_seconds: float
    head_seconds: float
    fine_tune_seconds: float
    head_regularization: float  # scikit-learn's C (inverse L2 strength) chosen on validation
    head_val_loss: float
    head_val_accuracy: float
    fine_tune_epochs: int
    features_cached: bool  # read from the cache rather than computed
    features_file: str

    def summary(self) -> str:
        source = "from the cache" if self.features_cached else "computed"
        text = f"time: features {self.features_seconds:.1f} s ({source}), head {self.head_seconds:.1f} s"
        if self.fine_tune_epochs:
            text += f", fine-tune {self.fine_tune_seconds:.1f} s ({self.fine_tune_epochs} epochs)"
        return text


def uses_backbone(config: FitConfig) -> bool:
    """Pretrained weights make a run a transfer-learning run."""
    return bool(config.weights)


def pretrained_weights(config: FitConfig) -> Path:
    """The backbone file of a transfer-learning run: from the Keras cache (downloaded once) or the user's."""
    spec = config.preprocess
    weights = weights_file(config.model_options, (spec.height, spec.width, spec.channels))
    if weights is None:
        raise ValueError("not a transfer-learning config: no --weights")
    return weights


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
    weights = pretrained_weights(config)

    started = time.monotonic()
    extractor = keras.Model(model.input, model.get_layer("scores").input)
    bar = keras.utils.Progbar(int(images.readable.sum()), unit_name="image", verbose=1 if sys.stderr.isatty() else 2)
    key = backbone_key(config.model, config.width, model.input_shape[1:], weights)
    features, features_file, cached = cached_features(images, extractor, key, bar.update)
    features_seconds = time.monotonic() - started

    started = time.monotonic()
    regularization, head_loss, head_accuracy = _train_head(model, features, train, val)
    model.optimizer.build(model.trainable_variables)  # slots for the head alone, as the file will be read back
    model.save(best_file)
    head_seconds = time.monotonic() - started
    log.info("head: val_loss %.4f, val_accuracy %.4f (C=%g)", head_loss, head_accuracy, regularization)

    started, tuned = time.monotonic(), 0
    if config.fine_tune:
        tuned = _fine_tune(model, config, train, val, best_file, history_file)
    result = TransferResult(
        features_seconds,
        head_seconds,
        time.monotonic() - started,
        regularization,
        head_loss,
        head_accuracy,
        tuned,
        cached,
        str(features_file),
    )
    log.info(result.summary())
    return result


def _train_head(model: keras.Model, features: np.ndarray, train: Batches, val: Batches) -> tuple[float, float, float]:
    """Logistic regression on the features, copied into ``model``'s ``scores``: (C, val loss, val accuracy).

    The strengths are fitted weakest regularization last, each starting from the previous solution.
    """
    classes = model.output_shape[-1]
    # float64: scikit-learn keeps float32 inputs in float32, and log_loss warns at their rounding
    x_train, x_val = features[train.indices].astype(np.float64), features[val.indices].astype(np.float64)
    weights = None if train.class_weights is None else train.class_weights[train.labels]
    probe = LogisticRegression(max_iter=HEAD_ITERATIONS, warm_start=True)
    fits = []
    for c in sorted(HEAD_REGULARIZATION):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the iteration cap is the budget; the fit stands
            probe.set_params(C=c).fit(x_train, train.labels, sample_weight=weights)
        kernel, bias = _dense(probe, features.shape[1], classes)
        probabilities = softmax(x_val @ kernel + bias, axis=1)
        loss = log_loss(val.labels, probabilities, labels=range(classes))
        fits.append((loss, c, kernel, bias, float((probabilities.argmax(axis=1) == val.labels).mean())))
    loss, c, kernel, bias, accuracy = min(fits, key=lambda fit: fit[0])
    model.get_layer("scores").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return c, float(loss), accuracy


def _dense(probe: LogisticRegression, features: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted regression as the kernel and bias of a softmax layer over every class."""
    kernel, bias = np.zeros((features, classes)), np.zeros(classes)
    if len(probe.classes_) == 2:  # one logit for the second class: softmax([0, z]) is sigmoid(z)
        kernel[:, probe.classes_[1]], bias[probe.classes_[1]] = probe.coef_[0], probe.intercept_[0]
    else:
        kernel[:, probe.classes_], bias[probe.classes_] = probe.coef_.T, probe.intercept_
    return kernel, bias


def unfreeze_top(backbone: keras.Model, blocks: int) -> None:
    """Make the last ``blocks`` blocks (and the final 1x1 convolution) trainable, batch norm excepted:
    a frozen batch-norm layer also runs in inference mode in Keras 3."""
    first = BACKBONE_BLOCKS - blocks
    prefix = "expanded_conv" if first == 0 else f"block_{first}_"
    names = [layer.name for layer in backbone.layers]
    start = 0 if blocks == BACKBONE_BLOCKS else next(i for i, n in enumerate(names) if n.startswith(prefix))
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)


def _fine_tune(
    model: keras.Model,
    config: FitConfig,
    train: Batches,
    val: Batches,
    best_file: Path,
    history_file: Path,
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
        epochs=config.fine_tune_epochs,
        callbacks=[
            keras.callbacks.ModelCheckpoint(best_file, save_best_only=True, initial_value_threshold=start_loss),
            keras.callbacks.EarlyStopping(patience=config.patience),
            keras.callbacks.CSVLogger(str(history_file)),
        ],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return len(history.history["loss"])
