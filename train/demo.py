"""The pieces of ``make demo`` that are not product commands: a video of held-out digits, and scoring.

python -m train.demo video RUN_DIR --bundle BUNDLE --out demo/
python -m train.demo score demo/results.jsonl --truth demo/truth.txt
"""

import argparse
import json
import sys
from pathlib import Path

import cv2

from edge.console import HelpFormatter, add_logging_flags, run_main
from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EXIT_OK, EdgesightError

FRAME_SIDE = 256
FPS = 10


def write_video(run_dir: Path, bundle: Path, out: Path) -> int:
    """Write ``digits.mp4`` (the run's test split, one digit per frame), ``truth.txt`` and ``edgesight.toml``."""
    from train.data import read_examples
    from train.run import load_run  # imports TensorFlow: only here, so `score` starts at once

    run = load_run(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / "digits.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (FRAME_SIDE, FRAME_SIDE))
    if not writer.isOpened():
        raise EdgesightError(f"{video_path}: OpenCV cannot write MPEG-4 video here", EXIT_DATA)
    truth = []
    test = read_examples(run.examples("test"), run.config.preprocess, keep_originals=True)
    for example, image in zip(test.good, test.originals, strict=True):
        # Nearest-neighbour upscaling by a whole factor: the daemon's area resize recovers the digit exactly.
        writer.write(cv2.resize(image, (FRAME_SIDE, FRAME_SIDE), interpolation=cv2.INTER_NEAREST))
        truth.append(run.classes[example.label])
    writer.release()
    (out / "truth.txt").write_text("".join(f"{label}\n" for label in truth))
    config = (
        f'[source]\nuri = "{video_path.name}"\n\n[model]\npath = "{Path(bundle).resolve()}"\n\n[output]\njsonl = "-"\n'
    )
    (out / "edgesight.toml").write_text(config)
    return len(truth)


def score(results: Path, truth: Path) -> tuple[float, int]:
    """Accuracy of per-frame JSON results against one expected label per frame."""
    for path in (results, truth):
        if not path.is_file():
            raise EdgesightError(f"{path}: no such file", EXIT_NO_INPUT)
    expected = truth.read_text().split()
    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    if len(lines) != len(expected):
        raise EdgesightError(f"{results}: {len(lines)} results for {len(expected)} frames", EXIT_DATA)
    correct = sum(line["label"] == label for line, label in zip(lines, expected, strict=True))
    return correct / max(1, len(expected)), len(expected)


def _video(args: argparse.Namespace) -> int:
    frames = write_video(args.run, args.bundle, args.out)
    print(f"wrote {frames} frames to {args.out / 'digits.mp4'} with {args.out / 'edgesight.toml'}")
    return EXIT_OK


def _score(args: argparse.Namespace) -> int:
    accuracy, frames = score(args.results, args.truth)
    print(f"digits accuracy over {frames} video frames: {accuracy:.4f}")
    if accuracy < args.min_accuracy:
        print(f"below the expected {args.min_accuracy}", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train.demo", description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    video = commands.add_parser("video", help="write the held-out digits as a video and a daemon config")
    video.add_argument("run", type=Path, help="run directory from `edgesight-train fit`")
    video.add_argument("--bundle", type=Path, required=True, help="bundle directory the config points at")
    video.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    video.set_defaults(handler=_video)
    scorer = commands.add_parser("score", help="accuracy of the daemon's JSON lines against truth.txt")
    scorer.add_argument("results", type=Path, help="JSON lines from `edgesight run`")
    scorer.add_argument("--truth", type=Path, required=True, help="one expected label per frame")
    scorer.add_argument("--min-accuracy", type=float, default=0.95, help="exit non-zero below this")
    scorer.set_defaults(handler=_score)
    for sub in (video, scorer):
        add_logging_flags(sub)
    return parser


if __name__ == "__main__":
    sys.exit(run_main("train.demo", build_parser(), None))
