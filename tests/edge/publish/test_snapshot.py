"""The snapshot as people see it, on a monitor or a phone."""

import numpy as np

from edge.publish.snapshot import annotate


def white(image: np.ndarray) -> np.ndarray:
    """Where the (white, anti-aliased) text is drawn on a black frame."""
    return (image > 127).all(axis=2)


def text_rows(image: np.ndarray, right: int) -> np.ndarray:
    """Rows holding text pixels left of ``right``."""
    return np.flatnonzero(white(image[:, :right]).any(axis=1))


def test_snapshot_text_is_sized_by_the_image_width_so_a_phone_can_read_it():
    """A phone shows the snapshot about 360 px wide: letters must stay ~3.5 % of the width (12+ px there)."""
    for width in (320, 640, 1280):
        image = annotate(np.zeros((480, 640, 3), np.uint8), [["7", 0.0]], width)
        rows = text_rows(image, width // 2)
        letter_height = rows.max() - rows.min() + 1
        assert letter_height >= 0.035 * width, (width, letter_height)


def test_snapshot_panel_covers_at_most_half_the_frame_and_long_labels_are_shortened():
    topk = [[f"a rather long class name {i}", 0.2] for i in range(10)]
    image = annotate(np.zeros((480, 640, 3), np.uint8), topk, 640)
    rows = text_rows(image, 640)
    assert rows.max() < image.shape[0] / 2
    # The text stays left of the bars, which start half-way across.
    columns = np.flatnonzero(white(image).any(axis=0))
    assert columns.max() < 320
