"""The six measurements. Each returns plain data (for results.json); ratios compare runs made
one after the other in the same benchmark run, on the same model, video and thread count."""

import functools
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench import media
from bench.models import linear_bundle
from bench.programs import BIN, ROOT, ProgramRun, bare_rate, daemon_config, edgesight_run, run_program, usual_loop
from edge.bundle import TensorSpec
from edge.fastprep import make_preparer
from edge.preprocess import PreprocessSpec


@dataclass(frozen=True)
class Plan:
    """How much of everything to run: the full benchmark, or the smoke test's ``--quick`` sliver."""

    models: tuple[str, ...]
    frames: int  # frames in the 480p video
    frames_1080p: int
    preprocess_repeats: int
    freshness_model: str
    freshness_s: float
    footprint_model: str
    invokes: int  # bare-loop and int8/float invokes
    repeats: int  # throughput runs are repeated, interleaved, and the best kept: other work only slows


FULL = Plan(("tiny", "resnet8", "mobilenetv2"), 300, 150, 200, "mobilenetv2", 10.0, "mobilenetv2", 200, 2)
QUICK = Plan(("tiny",), 40, 40, 5, "tiny", 1.5, "tiny", 20, 1)


@dataclass(frozen=True)
class Workspace:
    build: Path  # cached models and videos; logs and configs of this run
    models: dict[str, Path]  # name -> built model directory (bundle/, float.tflite)
    threads: int

    def bundle(self, name: str) -> Path:
        return (self.models[name] / "bundle").resolve()

    def int8(self, name: str) -> Path:
        return self.bundle(name) / "model.tflite"

    def ours(self, tag: str, source: str, bundle: Path, threads: int = 0) -> list[str]:
        config = daemon_config(self.build / "configs" / f"{tag}.toml", source, bundle, threads or self.threads)
        return edgesight_run(config)

    def log(self, tag: str) -> Path:
        return self.build / "logs" / f"{tag}.log"


def _summary(run: ProgramRun) -> dict:
    return {
        "results": len(run.records),
        "fps": round(run.rate(), 2),
        "latency_ms_p50": round(run.latency_ms(50), 2),
        "latency_ms_p99": round(run.latency_ms(99), 2),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "peak_private_mb": round(run.peak_anon_mb, 1),
        "first_result_s": round(run.first_result_s, 3),
        "exit": run.returncode,
    }


def _best(runs: list[ProgramRun]) -> ProgramRun:
    return max(runs, key=lambda run: run.rate())


def pipeline_efficiency(ws: Workspace, plan: Plan) -> dict:
    """1. ``edgesight run`` over a 480p file, as fast as it goes, vs ``set_tensor`` + ``invoke`` alone;
    also with a linear-resize contract, to separate the pipeline's overhead from INTER_AREA's cost."""
    video = str(media.video(ws.build, "480p", plan.frames).resolve())
    rows = {}
    for name in plan.models:
        commands = {
            "ours": ws.ours(f"efficiency-{name}", video, ws.bundle(name)),
            "linear": ws.ours(f"efficiency-linear-{name}", video, linear_bundle(ws.models[name])),
        }
        runs: dict[str, list[ProgramRun]] = {key: [] for key in commands}
        bare = []
        for _ in range(plan.repeats):
            for key, command in commands.items():
                runs[key].append(run_program(command, ws.log(f"efficiency-{key}-{name}")))
            bare.append(bare_rate(ws.int8(name), ws.threads, plan.invokes))
        ours, linear = _best(runs["ours"]), _best(runs["linear"])
        bare_fps, bare_ms = max(bare)
        rows[name] = {
            "video": "480p",
            "edgesight": _summary(ours),
            "edgesight_linear": _summary(linear),
            "bare_fps": round(bare_fps, 2),
            "bare_invoke_ms": round(bare_ms, 2),
            "efficiency": round(ours.rate() / bare_fps, 3),
            "efficiency_linear": round(linear.rate() / bare_fps, 3),
        }
    return rows


def usual_loop_comparison(ws: Workspace, plan: Plan) -> dict:
    """2. The usual synchronous example loop vs ``edgesight run``: same 1080p video, model and threads.

    Our bundles resize with INTER_AREA (the training contract); the examples use ``cv2.resize``'s
    default, INTER_LINEAR. The same model with a linear contract shows the pipeline on equal work.
    """
    video = str(media.video(ws.build, "1080p", plan.frames_1080p).resolve())
    rows = {}
    for name in plan.models:
        commands = {
            "usual": usual_loop(ws.int8(name), video, ws.threads),
            "ours": ws.ours(f"usual-ours-{name}", video, ws.bundle(name)),
            "linear": ws.ours(f"usual-linear-{name}", video, linear_bundle(ws.models[name])),
        }
        runs: dict[str, list[ProgramRun]] = {key: [] for key in commands}
        for _ in range(plan.repeats):
            for key, command in commands.items():
                runs[key].append(run_program(command, ws.log(f"usual-{key}-{name}")))
        usual, ours, ours_linear = (_best(runs[key]) for key in commands)
        rows[name] = {
            "video": "1080p",
            "edgesight": _summary(ours),
            "edgesight_linear": _summary(ours_linear),
            "usual": _summary(usual),
            "throughput_ratio": round(ours.rate() / usual.rate(), 3),
            "throughput_ratio_linear": round(ours_linear.rate() / usual.rate(), 3),
        }
    return rows


def _usual_prepare(image: np.ndarray, size: int, tensor: TensorSpec) -> np.ndarray:
    """The examples' preprocessing: area resize, colour, float normalization, then quantize."""
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    pixels = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32)  # mean 0, std 1: our models' contract
    quantized = np.clip(np.round(pixels / tensor.scale + tensor.zero_point), -128, 127).astype(np.int8)
    return quantized[np.newaxis]


def _time_ms(function: Callable[[np.ndarray], np.ndarray], image: np.ndarray, repeats: int) -> float:
    function(image)  # first call: tables and buffers
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(image)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def preprocessing(ws: Workspace, plan: Plan) -> dict:
    """3. One frame at 480p, 720p and 1080p to a 96² and a 224² int8 RGB input: ours vs the usual path."""
    rows = {}
    for size in (96, 224):
        # Our models' integer input: the raw pixel shifted by the zero point.
        tensor = TensorSpec("int8", (1, size, size, 3), scale=1.0, zero_point=-128)
        ours = make_preparer(PreprocessSpec(height=size, width=size), tensor)
        usual = functools.partial(_usual_prepare, size=size, tensor=tensor)
        linear = make_preparer(PreprocessSpec(height=size, width=size, interpolation="linear"), tensor)
        for name, frame_size in media.SIZES.items():
            image = media.frame(frame_size, 1)
            rows[f"{name}->{size}"] = {
                "ours_ms": round(_time_ms(ours, image, plan.preprocess_repeats), 3),
                "usual_ms": round(_time_ms(usual, image, plan.preprocess_repeats), 3),
                "identical": bool(np.array_equal(ours(image), usual(image))),
                "ours_linear_ms": round(_time_ms(linear, image, plan.preprocess_repeats), 3),
            }
    return rows


def _ages(run: ProgramRun, produced: list[float]) -> list[float]:
    pairs = zip(run.arrivals, run.records, strict=True)
    return [(t - produced[r["frame"]]) * 1000 for t, r in pairs if r["frame"] < len(produced)]


def _percentiles(values: list[float], digits: int = 1) -> dict:
    if not values:
        return {"p50": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), digits) for q in (50, 99)}


def _freshness_run(ws: Workspace, plan: Plan, size: str, program: str) -> dict:
    name = plan.freshness_model
    with media.MjpegStream(media.SIZES[size]) as stream:
        if program == "edgesight":
            command = ws.ours(f"freshness-{size}", stream.url, ws.bundle(name), threads=1)
        else:
            command = usual_loop(ws.int8(name), stream.url, 1)
        run = run_program(command, ws.log(f"freshness-{size}-{program}"), duration_s=plan.freshness_s)
        produced = list(stream.produced)
    ages = _ages(run, produced)
    row = {"frame_age_ms": _percentiles(ages), **_summary(run)}
    if program == "edgesight":
        row["reported_frame_age_ms"] = _percentiles([r["frame_age_ms"] for r in run.records])
        # Other work on the machine stretches single inferences: each result's age over its own latency.
        ratios = [age / r["latency_ms"] for age, r in zip(ages, run.records, strict=False) if r["latency_ms"]]
        row["age_over_latency"] = _percentiles(ratios, 2)
    return row


def freshness(ws: Workspace, plan: Plan) -> dict:
    """4. A live MJPEG stream at 30 fps on 127.0.0.1 (720p, 1080p): how old is the frame behind each result?

    The age is measured from when the stream produced the frame to when its result line arrived, the
    same way for both programs. Inference runs on one thread, so that it is slower than the stream.
    """
    streams = {
        size: {program: _freshness_run(ws, plan, size, program) for program in ("edgesight", "usual")}
        for size in ("720p", "1080p")
    }
    return {"model": plan.freshness_model, "fps": media.FPS, "streams": streams}


# What a process holds before it has loaded a model or read a frame: each line imports one more.
IMPORTS = {
    "python": "",
    "+ numpy": "import numpy",
    "+ opencv": "import numpy, cv2",
    "+ ai-edge-litert": "import numpy, cv2, ai_edge_litert.interpreter",
    "+ edgesight run's modules": "import numpy, cv2, ai_edge_litert.interpreter, edge.cli, edge.service",
}


MEMORY_KEYS = ("peak_rss_mb", "peak_private_mb", "first_result_s")


def _import_rss_mb(statement: str) -> float:
    code = f"{statement}\nimport pathlib; print(pathlib.Path('/proc/self/status').read_text())"
    done = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    peak_kb = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("VmHWM:"))
    return round(int(peak_kb) / 1024, 1)


def footprint(ws: Workspace, plan: Plan, efficiency: dict) -> dict:
    """5. Peak RSS and time to first result: ``edgesight run`` vs the same model through tensorflow.lite."""
    name = plan.footprint_model
    video = str(media.video(ws.build, "480p", plan.frames).resolve())
    tf = run_program(usual_loop(ws.int8(name), video, ws.threads, "tensorflow"), ws.log("footprint-tf"), limit=20)
    litert = run_program(usual_loop(ws.int8(name), video, ws.threads), ws.log("footprint-usual"), limit=20)
    ours = efficiency[name]["edgesight"]
    return {
        "model": name,
        "video": "480p",
        "edgesight": {k: ours[k] for k in MEMORY_KEYS},
        "usual_litert": {k: _summary(litert)[k] for k in MEMORY_KEYS},
        "usual_tensorflow": {k: _summary(tf)[k] for k in MEMORY_KEYS},
        "imports_peak_rss_mb": {what: _import_rss_mb(statement) for what, statement in IMPORTS.items()},
    }


def int8_vs_float(ws: Workspace, plan: Plan) -> dict:
    """6. Model file size and bare invoke latency, int8 vs float, same thread count."""
    rows = {}
    for name in plan.models:
        int8, float_model = ws.int8(name), (ws.models[name] / "float.tflite").resolve()
        _, int8_ms = bare_rate(int8, ws.threads, plan.invokes)
        _, float_ms = bare_rate(float_model, ws.threads, plan.invokes)
        rows[name] = {
            "int8_kb": round(int8.stat().st_size / 1024, 1),
            "float_kb": round(float_model.stat().st_size / 1024, 1),
            "int8_invoke_ms": round(int8_ms, 3),
            "float_invoke_ms": round(float_ms, 3),
        }
    return rows
