"""4. Freshness on a live stream and 5. footprint: what runs against the clock, and what it holds."""

import subprocess

import numpy as np

from bench import cpu, media
from bench.measure import Plan, Workspace
from bench.programs import BIN, ROOT, ProgramRun, run_program, usual_loop

PROGRAMS = ("edgesight", "usual")


def summary(run: ProgramRun) -> dict:
    return {
        "results": len(run.records),
        "fps": round(run.rate(), 2),
        "cpu_ms": round(run.steady_cpu_ms(), 3),
        "load": round(run.load, 2),
        "latency_ms_p50": round(run.latency_ms(50), 2),
        "latency_ms_p99": round(run.latency_ms(99), 2),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "peak_private_mb": round(run.peak_anon_mb, 1),
        "first_result_s": round(run.first_result_s, 3),
        "startup_cpu_s": round(run.cpu_s, 2),
        "exit": run.returncode,
    }


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
    row = {"frame_age_ms": _percentiles(ages), **summary(run)}
    del row["startup_cpu_s"]
    if program == "edgesight":
        row["reported_frame_age_ms"] = _percentiles([r["frame_age_ms"] for r in run.records])
        # Other work on the machine stretches single inferences: each result's age over its own latency.
        ratios = [age / r["latency_ms"] for age, r in zip(ages, run.records, strict=False) if r["latency_ms"]]
        row["age_over_latency"] = _percentiles(ratios, 2)
        age_p99 = row["frame_age_ms"]["p99"]
        row["age_p99_over_latency_p50"] = round(age_p99 / row["latency_ms_p50"], 2) if ages else float("nan")
    return row


def freshness(ws: Workspace, plan: Plan) -> dict:
    """4. A live MJPEG stream at 30 fps on 127.0.0.1 (720p, 1080p): how old is the frame behind each result?

    The age is measured from when the stream produced the frame to when its result line arrived, the
    same way for both programs. Inference runs on one thread, so that it is slower than the stream.
    CPU per result is sampled from /proc while the stream runs (steady state, start-up left out).
    """
    rounds: dict[str, dict[str, list[dict]]] = {size: {p: [] for p in PROGRAMS} for size in ("720p", "1080p")}
    for _ in range(plan.rounds):
        for size, programs in rounds.items():
            for program, runs in programs.items():
                runs.append(_freshness_run(ws, plan, size, program))
    streams: dict[str, dict[str, dict]] = {}
    for size, programs in rounds.items():
        streams[size] = {}
        for program, runs in programs.items():
            best = sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]  # the median round, whole
            streams[size][program] = {
                **best,
                "cpu_ms": cpu.stat([r["cpu_ms"] for r in runs]),
                "fps": cpu.stat([r["fps"] for r in runs], 2),
                "load": [r["load"] for r in runs],
            }
            if program == "edgesight":
                streams[size][program]["age_p99_over_latency_p50"] = cpu.stat(
                    [r["age_p99_over_latency_p50"] for r in runs], 2
                )
    return {"model": plan.freshness_model, "fps": media.FPS, "streams": streams}


# What a process holds before it has loaded a model or read a frame: each line imports one more.
IMPORTS = {
    "python": "",
    "+ numpy": "import numpy",
    "+ opencv": "import numpy, cv2",
    "+ ai-edge-litert": "import numpy, cv2, ai_edge_litert.interpreter",
    "+ edgesight run's modules": "import numpy, cv2, ai_edge_litert.interpreter, edge.cli, edge.service",
    "+ paho-mqtt": "import numpy, cv2, ai_edge_litert.interpreter, edge.cli, edge.service, paho.mqtt.client",
    "+ prometheus_client": "import numpy, cv2, ai_edge_litert.interpreter, edge.cli, edge.service,"
    " paho.mqtt.client, prometheus_client",
}


def _import_rss_mb(statement: str) -> float:
    code = f"{statement}\nimport pathlib; print(pathlib.Path('/proc/self/status').read_text())"
    done = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    peak_kb = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("VmHWM:"))
    return round(int(peak_kb) / 1024, 1)


MEMORY_KEYS = ("peak_rss_mb", "peak_private_mb", "first_result_s", "startup_cpu_s")


def footprint(ws: Workspace, plan: Plan) -> dict:
    """5. Peak RSS, time and CPU to the 20th result: ``edgesight run`` vs the usual loop on LiteRT and on
    tensorflow.lite, the same model and 480p video."""
    name = plan.footprint_model
    video = ws.video("480p", plan.frames[name][0])
    programs = {
        "edgesight": ws.ours(f"footprint-{name}", video, ws.bundle(name)),
        "usual_litert": usual_loop(ws.int8(name), video, ws.threads),
        "usual_tensorflow": usual_loop(ws.int8(name), video, ws.threads, "tensorflow"),
    }
    rows = {}
    for key, command in programs.items():
        rounds = 1 if key == "usual_tensorflow" else plan.rounds  # 20 s and 700 MB a time: once is plenty
        runs = [run_program(command, ws.log(f"footprint-{key}"), limit=20) for _ in range(rounds)]
        rows[key] = {k: summary(sorted(runs, key=lambda r: r.peak_rss_mb)[len(runs) // 2])[k] for k in MEMORY_KEYS}
        rows[key]["peak_rss_mb_rounds"] = [round(r.peak_rss_mb, 1) for r in runs]
    return {
        "model": name,
        "video": "480p",
        "programs": rows,
        "imports_peak_rss_mb": {what: _import_rss_mb(statement) for what, statement in IMPORTS.items()},
    }
