"""The per-frame measurements: what a frame costs ``edgesight run`` against its floor (decode + invoke),
against the usual example loop, and int8 against float. Each returns plain data for results.json.

Every program is measured in every round, interleaved with the others, by CPU time per frame
(``bench.cpu``); wall-clock rates are reported beside it. Ratios are taken within a round.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import cpu, media
from bench.programs import BIN, daemon_config, edgesight_run, floor_decode, floor_invoke, run_program, usual_loop


@dataclass(frozen=True)
class TrainingCase:
    """One model trained by ``bench.training``: fit against a bare model.fit."""

    model: str
    size: int
    width: float  # the width multiplier
    images: int  # per class, generated
    epochs: int  # the first is not timed

    @property
    def title(self) -> str:
        width = f", width {self.width:g}" if self.width != 1.0 else ""
        return f"{self.model} {self.size}²{width}"


@dataclass(frozen=True)
class Plan:
    """How much of everything to run: the full benchmark, or the smoke test's ``--quick`` sliver."""

    models: tuple[str, ...]
    frames: dict[str, tuple[int, int]]  # model -> frames of the short and the long 480p video
    frames_1080p: dict[str, tuple[int, int]]
    invoke_s: float  # CPU seconds of each bare invoke loop
    preprocess_calls: int  # calls per timed batch of one preprocessing path
    rounds: int  # every section measures all its programs this many times, interleaved
    per_frame_rounds: int  # section 1 (the per-frame targets) a few more
    freshness_model: str
    freshness_s: float
    footprint_model: str
    training: tuple[TrainingCase, ...] = ()


FULL = Plan(
    models=("tiny", "resnet8", "mobilenetv2"),
    frames={"tiny": (300, 1500), "resnet8": (300, 1500), "mobilenetv2": (100, 500)},
    frames_1080p={"tiny": (50, 250), "resnet8": (50, 250), "mobilenetv2": (50, 250)},
    invoke_s=1.5,
    preprocess_calls=50,
    rounds=3,
    per_frame_rounds=5,
    freshness_model="mobilenetv2",
    freshness_s=8.0,
    footprint_model="mobilenetv2",
    # CIFAR-10's image size for resnet8; MobileNetV2 as the README's recipe trains it for a Pi.
    training=(TrainingCase("resnet8", 32, 1.0, 150, 3), TrainingCase("mobilenetv2", 96, 0.35, 60, 3)),
)
QUICK = Plan(
    models=("tiny",),
    frames={"tiny": (20, 60)},
    frames_1080p={"tiny": (20, 40)},
    invoke_s=0.2,
    preprocess_calls=3,
    rounds=1,
    per_frame_rounds=1,
    freshness_model="tiny",
    freshness_s=1.5,
    footprint_model="tiny",
    training=(TrainingCase("tiny", 16, 1.0, 20, 2),),
)


@dataclass(frozen=True)
class Workspace:
    build: Path  # cached models and videos; logs and configs of this run
    models: dict[str, Path]  # name -> built model directory (bundle/, float.tflite)
    threads: int

    def bundle(self, name: str) -> Path:
        return (self.models[name] / "bundle").resolve()

    def int8(self, name: str) -> Path:
        return self.bundle(name) / "model.tflite"

    def float(self, name: str) -> Path:
        return (self.models[name] / "float.tflite").resolve()

    def ours(self, tag: str, source: str, bundle: Path, threads: int = 0) -> list[str]:
        config = daemon_config(self.build / "configs" / f"{tag}.toml", source, bundle, threads or self.threads)
        return edgesight_run(config)

    def video(self, size: str, frames: int) -> str:
        return str(media.video(self.build, size, frames).resolve())

    def ours_over(self, tag: str, size: str, bundle: Path) -> Callable[[int], list[str]]:
        """``edgesight run`` over the ``size`` video of n frames, for ``cpu.difference``."""

        def command(frames: int) -> list[str]:
            return self.ours(f"{tag}-{frames}", self.video(size, frames), bundle)

        return command

    def usual_over(self, name: str, size: str) -> Callable[[int], list[str]]:
        """The usual loop over the ``size`` video of n frames, for ``cpu.difference``."""

        def command(frames: int) -> list[str]:
            return usual_loop(self.int8(name), self.video(size, frames), self.threads)

        return command

    def log(self, tag: str) -> Path:
        return self.build / "logs" / f"{tag}.log"


def per_frame(ws: Workspace, plan: Plan) -> dict:
    """1. ``edgesight run`` over a 480p video, as fast as it goes, against the floor of a frame's cost:
    decoding it (``bench.floor decode``) plus invoking the model (``bench.floor invoke``)."""
    rows = {}
    for name in plan.models:
        short, long = plan.frames[name]
        rounds: dict[str, list[cpu.Measured]] = {"decode": [], "invoke": [], "edgesight": []}
        for _ in range(plan.per_frame_rounds):
            rounds["decode"].append(cpu.reported(floor_decode(ws.video("480p", long)), ws.log(f"decode-480p-{name}")))
            command = floor_invoke(ws.int8(name), ws.threads, plan.invoke_s)
            rounds["invoke"].append(cpu.reported(command, ws.log(f"invoke-{name}")))
            ours = ws.ours_over(f"per-frame-{name}", "480p", ws.bundle(name))
            rounds["edgesight"].append(cpu.difference(ours, (short, long), ws.log(f"per-frame-{name}")))
        overhead = [
            ours.cpu_ms / (decode.cpu_ms + invoke.cpu_ms) for decode, invoke, ours in zip(*rounds.values(), strict=True)
        ]
        wall = [ours.fps / invoke.fps for invoke, ours in zip(rounds["invoke"], rounds["edgesight"], strict=True)]
        rows[name] = {
            "video": "480p",
            "frames": [short, long],
            "programs": {key: cpu.program(values) for key, values in rounds.items()},
            "overhead": cpu.stat(overhead),
            "fps_over_bare_fps": cpu.stat(wall),
        }
    return rows


def usual_loop_comparison(ws: Workspace, plan: Plan) -> dict:
    """2. The usual synchronous example loop vs ``edgesight run``: same 1080p video, model and threads.

    Our bundles resize with the area contract (version 2: 2x2 averages, then INTER_AREA); the examples
    use ``cv2.resize``'s default, INTER_LINEAR. Decoding alone is measured beside them.
    """
    rows = {}
    for name in plan.models:
        short, long = plan.frames_1080p[name]
        rounds: dict[str, list[cpu.Measured]] = {"decode": [], "usual": [], "edgesight": []}
        for _ in range(plan.rounds):
            command = floor_decode(ws.video("1080p", long))
            rounds["decode"].append(cpu.reported(command, ws.log(f"decode-1080p-{name}")))
            rounds["usual"].append(cpu.difference(ws.usual_over(name, "1080p"), (short, long), ws.log(f"usual-{name}")))
            ours = ws.ours_over(f"usual-ours-{name}", "1080p", ws.bundle(name))
            rounds["edgesight"].append(cpu.difference(ours, (short, long), ws.log(f"usual-ours-{name}")))
        pairs = list(zip(rounds["usual"], rounds["edgesight"], strict=True))
        rows[name] = {
            "video": "1080p",
            "frames": [short, long],
            "programs": {key: cpu.program(values) for key, values in rounds.items()},
            "cpu_ratio": cpu.stat([usual.cpu_ms / ours.cpu_ms for usual, ours in pairs]),
            "throughput_ratio": cpu.stat([ours.fps / usual.fps for usual, ours in pairs]),
        }
    return rows


def int8_vs_float(ws: Workspace, plan: Plan) -> dict:
    """6. Model file size and bare invoke CPU time, int8 vs float, same thread count."""
    rows = {}
    for name in plan.models:
        rounds: dict[str, list[cpu.Measured]] = {"int8": [], "float": []}
        for _ in range(plan.rounds):
            for kind, model in (("int8", ws.int8(name)), ("float", ws.float(name))):
                command = floor_invoke(model, ws.threads, plan.invoke_s)
                rounds[kind].append(cpu.reported(command, ws.log(f"invoke-{kind}-{name}")))
        rows[name] = {
            "int8_kb": round(ws.int8(name).stat().st_size / 1024, 1),
            "float_kb": round(ws.float(name).stat().st_size / 1024, 1),
            "programs": {key: cpu.program(values) for key, values in rounds.items()},
            "float_over_int8_cpu": cpu.stat(
                [f.cpu_ms / i.cpu_ms for i, f in zip(rounds["int8"], rounds["float"], strict=True)]
            ),
        }
    return rows


def training_input(ws: Workspace, plan: Plan) -> dict:
    """7. ``fit``'s training steps against a bare ``model.fit`` on arrays in memory (``bench.training``)."""
    rows = {}
    for case in plan.training:
        tag = f"{case.model}-{case.size}-{case.images}"
        command = [
            str(BIN / "python"), "-m", "bench.training", "--data", str(ws.build / "train-data" / tag),
            "--cache", str(ws.build / "train-cache"), "--model", case.model, "--size", str(case.size),
            "--width", str(case.width), "--images", str(case.images), "--epochs", str(case.epochs),
            "--rounds", str(plan.rounds),
        ]  # fmt: skip
        run = run_program(command, ws.log(f"training-{tag}"), timeout_s=3600)
        if run.returncode != 0 or len(run.records) != plan.rounds:
            raise SystemExit(f"training {tag}: exit {run.returncode}; see {ws.log(f'training-{tag}')}")
        rounds = run.records
        rows[case.title] = {
            "input": f"{case.images * 10} generated {case.size}² JPEGs, {case.epochs} epochs (first not timed)",
            "batch_size": rounds[0]["batch_size"],
            "train_images": rounds[0]["train_images"],
            "bare_steps_per_s": cpu.stat([r["bare"]["steps_per_s"] for r in rounds]),
            "fit_steps_per_s": cpu.stat([r["fit"]["steps_per_s"] for r in rounds]),
            "bare_cpu_ms_per_step": cpu.stat([r["bare"]["cpu_ms_per_step"] for r in rounds], 2),
            "fit_cpu_ms_per_step": cpu.stat([r["fit"]["cpu_ms_per_step"] for r in rounds], 2),
            "speed_ratio": cpu.stat([r["fit"]["steps_per_s"] / r["bare"]["steps_per_s"] for r in rounds]),
            "cpu_ratio": cpu.stat([r["bare"]["cpu_ms_per_step"] / r["fit"]["cpu_ms_per_step"] for r in rounds]),
            "load": [round(run.load, 2)],
        }
    return {
        "description": "Steps per second of the training steps of every epoch but the first (validation and"
        " checkpoints between epochs left out), and CPU time per step of the whole process. *fit*: `train.fit.fit`"
        " with its defaults (augmentation on, class weights, shuffling from the memory-mapped cache); *bare*: the"
        " same model and compile, `model.fit` on the same pixels as float arrays, nothing else. *CPU ratio*:"
        " bare CPU per step over fit's, what the steps/s ratio comes to when the cores are saturated.",
        "models": rows,
    }
