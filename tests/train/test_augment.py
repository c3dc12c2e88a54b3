"""Augmentation and batching: in the input pipeline, seeded, off for evaluation."""

import numpy as np

from train.augment import Augment, augment_batch
from train.pipeline import Batches


def pixels(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def test_strength_zero_leaves_pixels_unchanged():
    batch = pixels()
    out = augment_batch(batch, Augment(strength=0.0, flip="none"), np.random.default_rng(1))
    assert out.dtype == np.float32 and np.array_equal(out, batch.astype(np.float32))


def test_augmentation_changes_pixels_within_range_and_repeats_with_the_seed():
    batch = pixels()
    first = augment_batch(batch, Augment(), np.random.default_rng(7))
    again = augment_batch(batch, Augment(), np.random.default_rng(7))
    other = augment_batch(batch, Augment(), np.random.default_rng(8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert not np.array_equal(first, batch.astype(np.float32))
    assert first.min() >= 0 and first.max() <= 255 and first.shape == batch.shape


def test_horizontal_flip_only_mirrors_left_and_right():
    image = np.zeros((1, 8, 8, 1), np.uint8)
    image[0, :, :4] = 255
    still = Augment(flip="horizontal", rotate=0, shift=0, zoom=0, brightness=0, contrast=0)
    seen = {tuple(augment_batch(image, still, np.random.default_rng(s))[0, 0, :, 0]) for s in range(20)}
    assert seen == {(255.0,) * 4 + (0.0,) * 4, (0.0,) * 4 + (255.0,) * 4}


def test_augment_problems_name_the_field():
    assert any("flip must be one of" in p for p in Augment(flip="diagonal").problems())
    assert any("rotate must not be negative" in p for p in Augment(rotate=-1).problems())


def test_batches_are_one_hot_weighted_and_reshuffled_reproducibly_per_epoch():
    data = pixels(10)
    labels = np.arange(10) % 2

    def make():
        return Batches(data, np.arange(10), labels, 2, 4, class_weights=[1.0, 3.0], seed=3)

    a, b = make(), make()
    x, y, w = a[0]
    assert x.shape == (4, 16, 16, 1) and y.shape == (4, 2) and y.sum(axis=1).tolist() == [1.0] * 4
    assert w.tolist() == [1.0 if label == 0 else 3.0 for label in y.argmax(axis=1)]
    assert np.array_equal(a[0][0], b[0][0]) and len(a) == 3
    epoch0 = np.concatenate([a[i][1].argmax(1) for i in range(3)])
    a.on_epoch_end()
    epoch1 = [a[i][0] for i in range(3)]
    assert sorted(epoch0.tolist()) == sorted(labels.tolist())
    assert not all(np.array_equal(p, q) for p, q in zip([b[i][0] for i in range(3)], epoch1, strict=True))


def test_evaluation_batches_are_unshuffled_and_unaugmented():
    data = pixels(5)
    batch = Batches(data, np.arange(5), np.zeros(5, int), 2, 8)[0]
    assert len(batch) == 2  # no class weights: (pixels, one-hot)
    x = batch[0]
    assert np.array_equal(x, data.astype(np.float32))
