"""3. Preprocessing one frame to the model's int8 input, in this process: CPU time per call.

Paths: ours (the current contract, version 2), ours under contract version 1 (one INTER_AREA call, as
bundles made before it still do), the usual examples' float path with the same one-call INTER_AREA (so
its tensor must equal version 1's), and ours with a linear contract.
"""

import functools
import statistics
import time

import cv2
import numpy as np

from bench import cpu, media
from bench.measure import Plan, Workspace
from edge.bundle import TensorSpec
from edge.fastprep import Preparer, make_preparer
from edge.preprocess import PreprocessSpec

PATHS = ("ours", "ours_v1", "usual", "ours_linear")
PREPROCESS_ROUNDS = 7


def _usual_prepare(image: np.ndarray, size: int, tensor: TensorSpec) -> np.ndarray:
    """The examples' preprocessing: area resize, colour, float normalization, then quantize."""
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    pixels = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32)  # mean 0, std 1: our models' contract
    quantized = np.clip(np.round(pixels / tensor.scale + tensor.zero_point), -128, 127).astype(np.int8)
    return quantized[np.newaxis]


def _timed(function: Preparer, image: np.ndarray, calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call, over ``calls`` calls after a first one (tables and buffers)."""
    function(image)
    started_cpu, started = time.process_time(), time.perf_counter()
    for _ in range(calls):
        function(image)
    return (time.process_time() - started_cpu) / calls * 1000, (time.perf_counter() - started) / calls * 1000


def preprocessing(ws: Workspace, plan: Plan) -> dict:
    """One frame at 480p, 720p and 1080p to a 96² and a 224² int8 RGB input, each path in turn, every round."""
    cases: dict[str, tuple[dict[str, Preparer], np.ndarray]] = {}
    for size in (96, 224):
        # Our models' integer input: the raw pixel shifted by the zero point.
        tensor = TensorSpec("int8", (1, size, size, 3), scale=1.0, zero_point=-128)
        paths: dict[str, Preparer] = {
            "ours": make_preparer(PreprocessSpec(height=size, width=size), tensor),
            "ours_v1": make_preparer(PreprocessSpec(height=size, width=size, version=1), tensor),
            "usual": functools.partial(_usual_prepare, size=size, tensor=tensor),
            "ours_linear": make_preparer(PreprocessSpec(height=size, width=size, interpolation="linear"), tensor),
        }
        for name, frame_size in media.SIZES.items():
            cases[f"{name}->{size}"] = (paths, media.frame(frame_size, 1))
    times: dict[str, dict[str, list[tuple[float, float]]]] = {key: {p: [] for p in PATHS} for key in cases}
    for _ in range(max(plan.rounds, PREPROCESS_ROUNDS)):  # seconds a round: more rounds for a steadier median
        for key, (paths, image) in cases.items():
            for path, function in paths.items():
                times[key][path].append(_timed(function, image, plan.preprocess_calls))
    rows = {}
    for key, (paths, image) in cases.items():
        row: dict = {
            path: {
                "cpu_ms": cpu.stat([c for c, _ in times[key][path]]),
                "wall_ms": round(statistics.median(w for _, w in times[key][path]), 3),
            }
            for path in PATHS
        }
        ours, old = times[key]["ours"], times[key]["ours_v1"]
        row["v1_over_ours_cpu"] = cpu.stat([o[0] / n[0] for n, o in zip(ours, old, strict=True)], 2)
        row["v1_equals_usual"] = bool(np.array_equal(paths["ours_v1"](image), paths["usual"](image)))
        rows[key] = row
    return rows
