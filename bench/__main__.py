"""``python -m bench [--quick] [--out DIR]``: build what is missing, measure, write the results."""

import argparse
import dataclasses
import datetime
import logging
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench import live, measure, models, prep, report
from bench.programs import BIN, ROOT

log = logging.getLogger("bench")

PACKAGES = ("edgesight", "ai-edge-litert", "numpy", "opencv-python-headless", "tensorflow")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def build_models(build: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """The cached models; missing ones are built by a TensorFlow process of its own, output to a log."""
    dirs = {name: models.model_dir(build, models.MODELS[name]) for name in names}
    missing = [name for name, path in dirs.items() if not models.is_built(path)]
    if missing:
        log.info("building %s (once; cached in %s)", ", ".join(missing), build / "models")
        logfile = build / "logs" / "models.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with logfile.open("w") as output:
            command = [str(BIN / "python"), "-m", "bench.models", str(build), *missing]
            if subprocess.run(command, cwd=ROOT, stdout=output, stderr=output, check=False).returncode:
                raise SystemExit(f"building the benchmark models failed; see {logfile}")
    return dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and few frames: checks that it runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where results.json and results.md go")
    parser.add_argument("--build", type=Path, default=ROOT / "build" / "bench", help="cached models and videos")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads")
    parser.add_argument("--rounds", type=int, help="rounds of each measurement (default 3, 5 per frame; --quick 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    plan = measure.QUICK if args.quick else measure.FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds, per_frame_rounds=args.rounds)
    started, load_before = time.monotonic(), _load()
    ws = measure.Workspace(args.build.resolve(), build_models(args.build, plan.models), args.threads)
    measurements: dict[str, dict] = {}
    seconds: dict[str, int] = {}
    for key, function in (
        ("per_frame", measure.per_frame),
        ("usual_loop", measure.usual_loop_comparison),
        ("preprocessing", prep.preprocessing),
        ("freshness", live.freshness),
        ("footprint", live.footprint),
        ("int8_vs_float", measure.int8_vs_float),
        ("training", measure.training_input),
    ):
        log.info("measuring %s (load %s)", key.replace("_", " "), _load())
        section_started = time.monotonic()
        measurements[key] = function(ws, plan)
        seconds[key] = round(time.monotonic() - section_started)
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()} {platform.machine()}",
            "load_before": load_before,
            "load_after": _load(),
        },
        "versions": _versions(),
        "threads": args.threads,
        "plan": "quick" if args.quick else "full",
        "rounds": plan.rounds,
        "per_frame_rounds": plan.per_frame_rounds,
        "seconds": round(time.monotonic() - started),
        "section_seconds": seconds,
        "measurements": measurements,
    }
    results["ratios"] = report.ratios(results)
    results["wall_ratios"] = report.wall_ratios(results)
    results["targets"] = report.targets(results)
    report.write(results, args.out)
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
