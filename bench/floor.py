"""The floor of a frame's cost, each part alone: decoding it, and invoking the model on it.

``python -m bench.floor decode --source VIDEO`` reads every frame of a video through OpenCV's FFmpeg
backend (as ``edgesight run`` does) and does nothing with it; ``python -m bench.floor invoke --model
M.tflite --threads T --seconds S`` runs ``set_tensor`` + ``invoke`` on one reused input for S seconds of
CPU time. Each prints one JSON line: frames, and the CPU time (user + sys of this process, all threads)
and wall time of the loop after a warm-up, so start-up is left out exactly.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable

WARMUP = 5  # the first invokes allocate and pack weights; the first frames open the decoder
MIN_INVOKES = 20


def _timed(step: Callable[[], bool], cpu_s: float = 0.0) -> dict:
    """Run ``step`` until it returns False (or for ``cpu_s`` of CPU time), timing all but the warm-up."""
    for _ in range(WARMUP):
        step()
    frames, cpu, wall = 0, time.process_time(), time.perf_counter()
    while (not cpu_s or frames < MIN_INVOKES or time.process_time() - cpu < cpu_s) and step():
        frames += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"frames": frames, "cpu_s": cpu, "wall_s": wall}


def decode(source: str) -> dict:
    import cv2

    capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise SystemExit(f"{source}: OpenCV cannot open it")
    return _timed(lambda: capture.read()[0])


def invoke(model: str, threads: int, seconds: float) -> dict:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    tensor = np.zeros(detail["shape"], detail["dtype"])

    def step() -> bool:
        interpreter.set_tensor(detail["index"], tensor)
        interpreter.invoke()
        return True

    return _timed(step, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("decode", help="decode every frame of a video")
    p.add_argument("--source", required=True)
    p = sub.add_parser("invoke", help="set_tensor + invoke for a while")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=2.0, help="CPU time to spend invoking")
    args = parser.parse_args(argv)
    found = decode(args.source) if args.what == "decode" else invoke(args.model, args.threads, args.seconds)
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
