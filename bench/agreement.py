"""Does decoding MJPEG frames at reduced scale change what a model says? Measured on a run's test split.

Each test image is shown as a camera would send it: scaled up to ``--camera`` (a scene larger than the
model; default: as it is) and JPEG-encoded. The int8 bundle then classifies it decoded in full and
decoded at the reduction ``edgesight run`` would choose for an MJPEG stream (``edge.capture.mjpeg``),
and, for scale, the lossless image before JPEG. Prints one JSON line and a markdown table row.

``python -m bench.agreement measure --run runs/digits --bundle bundles/digits --camera 640x480``;
``python -m bench.agreement video-dataset VIDEO OUT`` writes a video's frames as a dataset of a real scene
without labels: each frame's four quarters, the class being the quarter (``--by time``: whole frames, the
class being the stretch of the clip).
"""

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.bundle import load_bundle
from edge.capture.mjpeg import REDUCED, reduction
from edge.classifier import Classifier
from edge.images import read_image
from edge.preprocess import prepare


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def _decode(data: np.ndarray, flags: int) -> np.ndarray:
    image = cv2.imdecode(data, flags)
    if image is None:
        raise SystemExit("OpenCV cannot decode the JPEG it encoded")
    return image


def measure(run_dir: Path, bundle_dir: Path, camera: tuple[int, int] | None, quality: int) -> dict:
    from train.run import load_run  # TensorFlow: only for this

    run, classifier = load_run(run_dir), Classifier(load_bundle(bundle_dir), num_threads=2)
    spec = classifier.manifest.preprocess
    labels: dict[str, list[str]] = {"lossless": [], "full": [], "reduced": []}
    scales: set[str] = set()
    scores_lossless: list[np.ndarray] = []
    scores_full: list[np.ndarray] = []
    scores_reduced: list[np.ndarray] = []
    truth: list[str] = []
    input_change: list[float] = []
    for example in run.examples("test"):
        image = read_image(example.path)
        if image is None:
            continue
        if camera:
            image = cv2.resize(image, camera, interpolation=cv2.INTER_CUBIC)
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        full = _decode(data, cv2.IMREAD_COLOR)
        scale = reduction(full.shape, (spec.width, spec.height))
        reduced = _decode(data, REDUCED[scale]) if scale > 1 else full
        scales.add(f"{full.shape[1]}x{full.shape[0]} at 1/{scale}")
        for key, frame in (("lossless", image), ("full", full), ("reduced", reduced)):
            result = classifier.classify(frame)
            labels[key].append(result.label)
            if key == "lossless":
                scores_lossless.append(result.probabilities)
            elif key == "full":
                scores_full.append(result.probabilities)
            elif key == "reduced":
                scores_reduced.append(result.probabilities)
        difference = prepare(full, spec).astype(np.int16) - prepare(reduced, spec).astype(np.int16)
        input_change.append(float(np.abs(difference).mean()))
        truth.append(run.classes[example.label])
    n = len(truth)

    def accuracy(key: str) -> float:
        return round(sum(a == b for a, b in zip(labels[key], truth, strict=True)) / n, 4)

    def agreement(a: str, b: str) -> float:
        return round(sum(x == y for x, y in zip(labels[a], labels[b], strict=True)) / n, 4)

    probability_change = np.abs(np.asarray(scores_full) - np.asarray(scores_reduced)).max(axis=1)
    jpeg_change = np.abs(np.asarray(scores_lossless) - np.asarray(scores_full)).max(axis=1)
    return {
        "run": str(run_dir),
        "images": n,
        "model_input": f"{spec.width}x{spec.height} {spec.color}, {spec.interpolation} v{spec.version}",
        "camera": sorted(scales),
        "jpeg_quality": quality,
        "accuracy_lossless": accuracy("lossless"),
        "accuracy_full_decode": accuracy("full"),
        "accuracy_reduced_decode": accuracy("reduced"),
        "top1_agreement_full_vs_reduced": agreement("full", "reduced"),
        "top1_agreement_lossless_vs_full": agreement("lossless", "full"),
        "input_change_levels_mean": round(float(np.mean(input_change)), 3),
        "probability_change_max": round(float(probability_change.max()), 4),
        "probability_change_mean": round(float(probability_change.mean()), 4),
        "probability_change_by_jpeg_mean": round(float(jpeg_change.mean()), 4),
    }


def video_dataset(video: Path, out: Path, by: str) -> int:
    """Every frame's quarters as ``out/<quarter>/<index>.png`` (or whole frames as ``out/<stretch>/...``,
    four stretches of the clip); returns the number of images written."""
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    written = 0
    for index, frame in enumerate(frames):
        height, width = frame.shape[0] // 2, frame.shape[1] // 2
        if by == "time":
            parts = {f"stretch{index * 4 // len(frames)}": frame}
        else:
            parts = {f"quarter{2 * r + c}": frame[r * height : (r + 1) * height, c * width : (c + 1) * width]
                     for r in (0, 1) for c in (0, 1)}  # fmt: skip
        for label, image in parts.items():
            (out / label).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / label / f"{index:04d}.png"), image)
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("measure", help="classify a run's test split decoded in full and at reduced scale")
    p.add_argument("--run", type=Path, required=True, help="a training run (its test split is used)")
    p.add_argument("--bundle", type=Path, required=True, help="the run's int8 bundle")
    p.add_argument("--camera", type=_size, help="WxH: scale each image up to this camera size first")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality of the simulated camera")
    p = sub.add_parser("video-dataset", help="a video's frames as a dataset: classes by quarter of the frame")
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--by", choices=("quarter", "time"), default="quarter")
    args = parser.parse_args(argv)
    if args.command == "video-dataset":
        print(f"{video_dataset(args.video, args.out, args.by)} images written to {args.out}")
        return 0
    found = measure(args.run, args.bundle, args.camera, args.quality)
    print(json.dumps(found))
    cells = [
        found["run"], found["model_input"], ", ".join(found["camera"]), found["images"],
        found["accuracy_lossless"], found["accuracy_full_decode"], found["accuracy_reduced_decode"],
        found["top1_agreement_full_vs_reduced"], found["top1_agreement_lossless_vs_full"],
        found["input_change_levels_mean"], found["probability_change_mean"], found["probability_change_max"],
        found["probability_change_by_jpeg_mean"],
    ]  # fmt: skip
    print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
