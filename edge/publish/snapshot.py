"""The latest frame as a person sees it: scaled to a fixed width, top-k labels and bars drawn on it."""

from collections.abc import Sequence

import cv2
import numpy as np

BAR_COLOR = (80, 175, 76)  # BGR green
TEXT_COLOR = (255, 255, 255)
PANEL_ALPHA = 0.55


def annotate(image_bgr: np.ndarray, topk: Sequence[Sequence], width: int) -> np.ndarray:
    """A copy of the frame ``width`` pixels wide with a translucent panel listing ``[label, score]`` pairs.

    Small frames (a 32-pixel digit) are enlarged with nearest-neighbour so their pixels stay visible.
    """
    height = max(1, round(image_bgr.shape[0] * width / image_bgr.shape[1]))
    enlarge = width > image_bgr.shape[1]
    image = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_NEAREST if enlarge else cv2.INTER_AREA)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    rows = list(topk)
    if not rows:
        return image
    scale = max(0.4, width / 640)
    line = round(26 * scale)
    panel_h = min(height, line * len(rows) + round(8 * scale))
    overlay = image.copy()
    cv2.rectangle(overlay, (0, 0), (width, panel_h), (0, 0, 0), thickness=-1)
    image = cv2.addWeighted(overlay, PANEL_ALPHA, image, 1 - PANEL_ALPHA, 0)
    bar_x, bar_w = width // 2, width // 2 - round(10 * scale)
    for i, (label, score) in enumerate(rows):
        baseline = round(4 * scale) + line * (i + 1) - round(6 * scale)
        top = baseline - line + round(8 * scale)
        cv2.rectangle(image, (bar_x, top), (bar_x + max(1, round(bar_w * float(score))), baseline), BAR_COLOR, -1)
        text = f"{label} {float(score):.2f}"
        cv2.putText(image, text, (round(8 * scale), baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, TEXT_COLOR, 2)
    return image


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the snapshot as JPEG")
    return data.tobytes()
