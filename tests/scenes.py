"""A camera's view, made up: a garage door closed or open, with sensor noise that differs in every frame.

Frames of one scene are near-copies of each other (the noise averages away in a thumbnail); the two scenes
differ over the door, about a third of the picture.
"""

import cv2
import numpy as np

WIDTH, HEIGHT = 320, 240


def garage(state: str, seed: int, noise: float = 4.0) -> np.ndarray:
    """A BGR frame of the door ``"closed"`` or ``"open"``; ``seed`` picks the frame's noise."""
    ramp = np.linspace(150, 190, WIDTH, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], HEIGHT, axis=0), 3, axis=2)
    image[:, :, 0] -= 20  # a warm wall
    x0, x1, y0 = 80, 240, 60
    if state == "closed":
        image[y0:, x0:x1] = (205, 205, 200)
        for y in range(y0 + 20, HEIGHT, 30):
            image[y : y + 3, x0:x1] = (150, 150, 145)  # panel seams
    else:
        image[y0:, x0:x1] = (40, 38, 35)  # the dark inside
        image[150:215, 100:220] = (160, 60, 30)  # a car
        for cx in (125, 195):
            cv2.circle(image, (cx, 215), 14, (20, 20, 20), -1)
    rng = np.random.default_rng(seed)
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()
