"""results.json and results.md: the machine, the versions, every figure, the ratios and the targets checked."""

import json
from pathlib import Path

# The model the single-model targets name.
TARGET_MODEL = "mobilenetv2"


def ratios(results: dict) -> dict[str, dict]:
    """Every ratio of the run by name, each a median over rounds with its range: what two runs must agree on."""
    m = results["measurements"]
    found = {}
    for name, row in m["per_frame"].items():
        found[f"per-frame CPU / (decode + invoke), 480p, {name}"] = row["overhead"]
    for name, row in m["usual_loop"].items():
        found[f"usual loop CPU / edgesight CPU, 1080p, {name}"] = row["cpu_ratio"]
    for case, row in m["preprocessing"].items():
        found[f"preprocessing contract 1 / contract 2 CPU, {case.replace('->', ' → ')}²"] = row["v1_over_ours_cpu"]
    for name, row in m["int8_vs_float"].items():
        found[f"float / int8 invoke CPU, {name}"] = row["float_over_int8_cpu"]
    for name, row in m.get("training", {}).get("models", {}).items():
        found[f"bare model.fit CPU per step / fit's, {name}"] = row["cpu_ratio"]
    return found


def wall_ratios(results: dict) -> dict[str, dict]:
    """Ratios of wall-clock figures: they move with whatever else the machine runs, shown for what they are."""
    m = results["measurements"]
    found = {}
    for name, row in m["per_frame"].items():
        found[f"edgesight fps / bare invoke fps, 480p, {name}"] = row["fps_over_bare_fps"]
    for name, row in m["usual_loop"].items():
        found[f"edgesight fps / usual loop fps, 1080p, {name}"] = row["throughput_ratio"]
    for size, programs in m["freshness"]["streams"].items():
        found[f"frame age p99 / inference p50, {size} stream"] = programs["edgesight"]["age_p99_over_latency_p50"]
    for name, row in m.get("training", {}).get("models", {}).items():
        found[f"fit steps/s / bare model.fit steps/s, {name}"] = row["speed_ratio"]
    return found


def targets(results: dict) -> list[dict]:
    """Each target with its figure; a figure the run did not measure (``--quick``) is left out."""
    m = results["measurements"]
    rows = []

    def add(what: str, value: float | None, limit: float, sense: str, unit: str, stretch: float | None = None) -> None:
        if value is None:
            return
        met = value >= limit if sense == "≥" else value <= limit
        row = {"target": what, "value": value, "limit": limit, "sense": sense, "unit": unit, "met": met}
        if stretch is not None:
            row["stretch"] = stretch
            row["stretch_met"] = value >= stretch if sense == "≥" else value <= stretch
        rows.append(row)

    for name, row in m["per_frame"].items():
        add(f"CPU per frame / (decode + invoke), 480p, {name}", row["overhead"]["median"], 1.15, "≤", "×")
    cpu_ms = m["preprocessing"]["1080p->224"]["ours"]["cpu_ms"]["median"]
    add("preprocessing 1080p → 224² int8, CPU per frame", cpu_ms, 2.0, "≤", " ms", 1.0)
    fresh = m["freshness"]
    ratio = fresh["streams"]["1080p"]["edgesight"]["age_p99_over_latency_p50"]["median"]
    add(f"frame age p99 / inference p50, 1080p stream ({fresh['model']})", ratio, 2.0, "≤", "×")
    foot = m["footprint"]
    ours = foot["programs"]["edgesight"]
    add(f"peak RSS of `edgesight run` ({foot['model']})", ours["peak_rss_mb"], 80, "≤", " MB", 60)
    add(f"first result after start ({foot['model']})", ours["first_result_s"], 1.5, "≤", " s")
    for name, row in m.get("training", {}).get("models", {}).items():
        add(f"fit steps/s / bare model.fit, {name} (wall clock)", row["speed_ratio"]["median"], 0.85, "≥", "×")
        add(f"the same from CPU per step (saturated cores), {name}", row["cpu_ratio"]["median"], 0.85, "≥", "×")
    return rows


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(markdown(results))


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def spread(stat: dict) -> str:
    """A median over rounds with its range: ``2.31 (2.20-2.45)``."""
    if stat["min"] == stat["max"]:
        return f"{stat['median']}"
    return f"{stat['median']} ({stat['min']}–{stat['max']})"


def _loads(program: dict) -> str:
    return "–".join(f"{v:.1f}" for v in (min(program["load"]), max(program["load"])))


def _target_rows(results: dict) -> list[list[object]]:
    rows = []
    for t in results["targets"]:
        limit = f"{t['sense']} {t['limit']}{t['unit']}"
        met = "yes" if t["met"] else "**no**"
        if "stretch" in t:
            limit += f" (stretch {t['stretch']}{t['unit']})"
            met += ", stretch " + ("yes" if t["stretch_met"] else "no")
        rows.append([t["target"], f"{t['value']}{t['unit']}", limit, met])
    return rows


def markdown(results: dict) -> str:
    machine, m = results["machine"], results["measurements"]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    lines = [
        f"# edgesight benchmark, {results['date']}",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['os']}; load average {machine['load_before']} before,"
        f" {machine['load_after']} after (other work shares this machine). Interpreter threads: {results['threads']}"
        f" (1 for freshness). {versions}. Plan: {results['plan']}, {results['rounds']} rounds"
        f" ({results.get('per_frame_rounds', results['rounds'])} for section 1)."
        f" Written by `make bench` in {results['seconds']} s.",
        "",
        "CPU time is user + sys of the measured process, all its threads, as the kernel accounts it. A program's"
        " CPU per frame is the difference between a long and a short run over the same input, so start-up"
        " cancels; `bench.floor` programs time their own steady loop. Each figure is the median over rounds"
        " (range in brackets); programs are interleaved within a round and ratios are taken within a round."
        " *load*: the 1-minute load average during the measurement, lowest–highest over rounds.",
        "",
        "## Targets",
        "",
    ]
    lines += table(["target", "measured", "limit", "met"], _target_rows(results))
    lines += ["## Ratios of CPU time (what two runs must agree on)", ""]
    lines += table(["ratio", "median (range over rounds)"], [[k, spread(v)] for k, v in ratios(results).items()])
    lines += [
        "Ratios of wall-clock figures, for comparison: they depend on idle cores and scheduling, and move with the"
        " machine's load.",
        "",
    ]
    lines += table(["ratio", "median (range over rounds)"], [[k, spread(v)] for k, v in wall_ratios(results).items()])
    lines += _per_frame(m["per_frame"]) + _usual(m["usual_loop"]) + _preprocessing(m["preprocessing"])
    lines += _freshness(m["freshness"]) + _footprint(m["footprint"]) + _int8(m["int8_vs_float"])
    if "training" in m:
        lines += _training(m["training"])
    return "\n".join(lines)


def _per_frame(rows: dict) -> list[str]:
    lines = [
        "## 1. CPU per frame: `edgesight run` on a 480p video against decode + invoke",
        "",
        "*decode*: reading the video's frames through OpenCV's FFmpeg backend and nothing else; *invoke*:"
        " `set_tensor` + `invoke` on one reused input; *edgesight*: `edgesight run` (capture thread,"
        " preprocessing to the bundle's contract, invoke, top-k, a JSON line per result). fps is wall clock.",
        "",
    ]
    return lines + table(
        ["model", "decode CPU ms", "invoke CPU ms", "edgesight CPU ms", "edgesight / (decode + invoke)",
         "edgesight fps", "bare invoke fps", "load"],
        [[k, spread(v["programs"]["decode"]["cpu_ms"]), spread(v["programs"]["invoke"]["cpu_ms"]),
          spread(v["programs"]["edgesight"]["cpu_ms"]), spread(v["overhead"]),
          spread(v["programs"]["edgesight"]["fps"]), spread(v["programs"]["invoke"]["fps"]),
          _loads(v["programs"]["edgesight"])] for k, v in rows.items()],
    )  # fmt: skip


def _usual(rows: dict) -> list[str]:
    lines = [
        "## 2. The usual example loop vs `edgesight run`, 1080p video",
        "",
        "The usual loop (`bench/usual.py`) reads, resizes with INTER_LINEAR, converts through float and invokes,"
        " one frame after the other; edgesight decodes in its capture thread while the main thread classifies"
        " and resizes to the bundle's contract (area, version 2). *CPU ratio*: usual CPU per frame over ours;"
        " *throughput ratio*: our wall-clock fps over the usual loop's (it depends on idle cores).",
        "",
    ]
    return lines + table(
        ["model", "decode CPU ms", "usual CPU ms", "edgesight CPU ms", "CPU ratio", "usual fps", "edgesight fps",
         "throughput ratio", "load"],
        [[k, spread(v["programs"]["decode"]["cpu_ms"]), spread(v["programs"]["usual"]["cpu_ms"]),
          spread(v["programs"]["edgesight"]["cpu_ms"]), spread(v["cpu_ratio"]), spread(v["programs"]["usual"]["fps"]),
          spread(v["programs"]["edgesight"]["fps"]), spread(v["throughput_ratio"]),
          _loads(v["programs"]["edgesight"])] for k, v in rows.items()],
    )  # fmt: skip


def _preprocessing(rows: dict) -> list[str]:
    lines = [
        "## 3. Preprocessing one frame to int8 RGB: CPU ms per frame (wall ms, median)",
        "",
        "*ours*: the current contract (version 2: an area downscale halves by exact 2x2 averages, then INTER_AREA"
        " for the rest); *contract 1*: one INTER_AREA call, as bundles made before version 2 keep doing;"
        " *usual*: the examples' path with the same INTER_AREA call and float normalization (its tensor must"
        ' equal contract 1\'s); *linear*: a contract with `interpolation = "linear"`.',
        "",
    ]

    def cell(row: dict, path: str) -> str:
        return f"{spread(row[path]['cpu_ms'])} ({row[path]['wall_ms']})"

    return lines + table(
        ["frame → input", "ours", "contract 1", "usual", "linear", "contract 1 / ours", "usual = contract 1"],
        [[k.replace("->", " → ") + "²", cell(v, "ours"), cell(v, "ours_v1"), cell(v, "usual"),
          cell(v, "ours_linear"), spread(v["v1_over_ours_cpu"]), "yes" if v["v1_equals_usual"] else "**no**"]
         for k, v in rows.items()],
    )  # fmt: skip


def _freshness(fresh: dict) -> list[str]:
    lines = [
        f"## 4. Freshness: a live MJPEG stream at {fresh['fps']} fps on 127.0.0.1, {fresh['model']} on 1 thread",
        "",
        "Frame age: from the stream producing the frame to its result line arriving, measured alike for both"
        " (the median round's percentiles). Inference: the daemon's `latency_ms` (preprocessing, invoke, top-k)."
        " *age p99 / inference p50*: per round, median and range. CPU per result is sampled from /proc while"
        " the stream runs.",
        "",
    ]
    rows = []
    for size, programs in fresh["streams"].items():
        for program, r in programs.items():
            ratio = spread(r["age_p99_over_latency_p50"]) if program == "edgesight" else ""
            rows.append(
                [size, program, spread(r["fps"]), spread(r["cpu_ms"]), f"{r['latency_ms_p50']} / {r['latency_ms_p99']}",
                 f"{r['frame_age_ms']['p50']} / {r['frame_age_ms']['p99']}", ratio, _loads(r)]
            )  # fmt: skip
    return lines + table(
        ["stream", "program", "results/s", "CPU ms per result", "inference ms p50 / p99", "frame age ms p50 / p99",
         "age p99 / inference p50", "load"],
        rows,
    )  # fmt: skip


def _footprint(foot: dict) -> list[str]:
    lines = [
        f"## 5. Footprint: {foot['model']}, {foot['video']} video, to the 20th result",
        "",
    ]
    lines += table(
        ["program", "peak RSS MB", "of which private MB", "first result s", "CPU s to the 20th result"],
        [[k, v["peak_rss_mb"], v["peak_private_mb"], v["first_result_s"], v["startup_cpu_s"]]
         for k, v in foot["programs"].items()],
    )  # fmt: skip
    lines += ["Peak RSS of a process that only imports, each line adding to the one before:", ""]
    return lines + table(["imports", "peak RSS MB"], [[k, v] for k, v in foot["imports_peak_rss_mb"].items()])


def _int8(rows: dict) -> list[str]:
    lines = ["## 6. int8 vs float: bare invoke", ""]
    return lines + table(
        ["model", "int8 KB", "float KB", "int8 CPU ms", "float CPU ms", "float / int8 CPU", "int8 fps", "float fps"],
        [[k, v["int8_kb"], v["float_kb"], spread(v["programs"]["int8"]["cpu_ms"]),
          spread(v["programs"]["float"]["cpu_ms"]), spread(v["float_over_int8_cpu"]),
          spread(v["programs"]["int8"]["fps"]), spread(v["programs"]["float"]["fps"])] for k, v in rows.items()],
    )  # fmt: skip


def _training(training: dict) -> list[str]:
    lines = [
        "## 7. Training input: `fit`'s steps per second against a bare `model.fit` on arrays in memory",
        "",
        training.get("description", ""),
        "",
    ]
    return lines + table(
        ["model", "input", "batch", "bare steps/s", "fit steps/s", "fit / bare", "bare CPU ms/step",
         "fit CPU ms/step", "CPU ratio", "load"],
        [[k, v["input"], v["batch_size"], spread(v["bare_steps_per_s"]), spread(v["fit_steps_per_s"]),
          spread(v["speed_ratio"]), spread(v["bare_cpu_ms_per_step"]), spread(v["fit_cpu_ms_per_step"]),
          spread(v["cpu_ratio"]), _loads(v)] for k, v in training["models"].items()],
    )  # fmt: skip
