"""Batches streamed from the preprocessed cache into Keras, shuffled and augmented reproducibly."""

import keras
import numpy as np

from train.augment import Augment, augment_batch


class Batches(keras.utils.PyDataset):
    """Rows ``indices`` of a (memory-mapped) pixel array as batches of (pixels, one-hot[, weights]).

    Only a batch is in memory at a time. With ``seed`` the order is reshuffled every epoch and the
    augmentation drawn from a generator seeded by (seed, epoch, batch): the same seed gives the same run.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        indices: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        *,
        class_weights: list[float] | None = None,
        augment: Augment | None = None,
        seed: int | None = None,
        epoch: int = 0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.pixels, self.indices, self.labels = pixels, np.asarray(indices), np.asarray(labels)
        self.num_classes, self.batch_size = num_classes, batch_size
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float32)
        self.augment, self.seed, self.epoch = augment, seed, epoch
        self._order = self._shuffled()

    def _shuffled(self) -> np.ndarray:
        if self.seed is None:
            return np.arange(len(self.indices))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.indices))

    def __len__(self) -> int:
        return int(np.ceil(len(self.indices) / self.batch_size))

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rows = self.indices[chosen]
        order = np.argsort(rows)  # memory maps read fastest in ascending order
        pixels = np.empty((len(rows), *self.pixels.shape[1:]), np.uint8)
        pixels[order] = self.pixels[rows[order]]
        if self.augment is not None and self.augment.enabled:
            x = augment_batch(pixels, self.augment, np.random.default_rng([self.seed or 0, self.epoch, index]))
        else:
            x = pixels.astype(np.float32)
        labels = self.labels[chosen]
        y = np.eye(self.num_classes, dtype=np.float32)[labels]
        if self.class_weights is None:
            return x, y
        return x, y, self.class_weights[labels]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._shuffled()
