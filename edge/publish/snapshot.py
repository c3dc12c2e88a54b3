"""The latest frame as a person sees it: scaled to a fixed width, top-k labels and bars drawn on it."""

from collections.abc import Sequence

import cv2
import numpy as np

SNAPSHOT_QUALITY = 80  # JPEG quality of the MQTT snapshot
BAR_COLOR = (80, 175, 76)  # BGR green
TEXT_COLOR = (255, 255, 255)
PANEL_ALPHA = 0.55
FONT = cv2.FONT_HERSHEY_SIMPLEX
# The font's height as a share of the width. Digits come out at about 4 % of the width: 14 px on a phone
# that shows the snapshot 360 px wide, where a fixed font scale on a 640 px snapshot gave 8 px.
TEXT_HEIGHT = 0.052
MAX_PANEL = 0.5  # the panel covers at most this share of the frame's height; further rows are left out


def annotate(image_bgr: np.ndarray, topk: Sequence[Sequence], width: int) -> np.ndarray:
    """A copy of the frame ``width`` pixels wide with a translucent panel listing ``[label, score]`` pairs,
    its text sized by the width so it stays readable wherever the image is shown.

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
    text_h = max(6, round(width * TEXT_HEIGHT))
    thickness = max(1, round(text_h / 14))
    font_scale = cv2.getFontScaleFromHeight(FONT, text_h, thickness)
    line, margin = round(text_h * 1.5), round(text_h * 0.4)
    rows = rows[: max(1, int((height * MAX_PANEL - margin) // line))]
    panel_h = min(height, line * len(rows) + margin)
    overlay = image.copy()
    cv2.rectangle(overlay, (0, 0), (width, panel_h), (0, 0, 0), thickness=-1)
    image = cv2.addWeighted(overlay, PANEL_ALPHA, image, 1 - PANEL_ALPHA, 0)
    bar_x = width // 2
    bar_w = width - bar_x - margin
    for i, (label, score) in enumerate(rows):
        baseline = line * (i + 1) - round((line - text_h) / 2)
        top = baseline - text_h
        cv2.rectangle(image, (bar_x, top), (bar_x + max(1, round(bar_w * float(score))), baseline), BAR_COLOR, -1)
        text = _fit(f"{label}", f" {float(score):.2f}", bar_x - 2 * margin, font_scale, thickness)
        cv2.putText(image, text, (margin, baseline), FONT, font_scale, TEXT_COLOR, thickness, cv2.LINE_AA)
    return image


def _fit(label: str, suffix: str, room: int, font_scale: float, thickness: int) -> str:
    """``label + suffix``, the label shortened with ``..`` until the text fits ``room`` pixels."""
    text = label + suffix
    while len(label) > 1 and cv2.getTextSize(text, FONT, font_scale, thickness)[0][0] > room:
        label = label[:-1]
        text = label + ".." + suffix
    return text


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the snapshot as JPEG")
    return data.tobytes()
