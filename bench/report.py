"""results.json and results.md: the machine, the versions, every figure, and the targets checked."""

import json
from pathlib import Path

# The model the targets name.
TARGET_MODEL = "mobilenetv2"


def targets(results: dict) -> list[dict]:
    """Each target with its figure; a figure the run did not measure (``--quick``) is left out."""
    m = results["measurements"]
    rows = []

    def add(what: str, value: float | None, limit: float, sense: str, unit: str) -> None:
        if value is None:
            return
        met = value >= limit if sense == "≥" else value <= limit
        rows.append({"target": what, "value": value, "limit": limit, "sense": sense, "unit": unit, "met": met})

    model = TARGET_MODEL if TARGET_MODEL in m["pipeline_efficiency"] else next(iter(m["pipeline_efficiency"]))
    efficiency = m["pipeline_efficiency"][model]
    add(f"pipeline efficiency ({model})", efficiency["efficiency"], 0.90, "≥", "")
    add(f"the same, linear-resize contract ({model})", efficiency["efficiency_linear"], 0.90, "≥", "")
    add(f"throughput vs usual loop, 1080p ({model})", m["usual_loop"][model]["throughput_ratio"], 1.5, "≥", "×")
    ratio = m["usual_loop"][model]["throughput_ratio_linear"]
    add(f"the same, both resizing INTER_LINEAR ({model})", ratio, 1.5, "≥", "×")
    add("preprocessing 1080p → 224² int8", m["preprocessing"]["1080p->224"]["ours_ms"], 2.0, "≤", "ms")
    fresh = m["freshness"]
    ours = fresh["streams"]["1080p"]["edgesight"]
    if ours["frame_age_ms"]["p99"] is not None:
        ratio = round(ours["frame_age_ms"]["p99"] / ours["latency_ms_p50"], 2)
        add(f"frame age p99 / inference p50, 1080p stream ({fresh['model']})", ratio, 2.0, "≤", "×")
    foot = m["footprint"]
    add(f"peak RSS ({foot['model']})", foot["edgesight"]["peak_rss_mb"], 80, "≤", "MB")
    add(f"first result after start ({foot['model']})", foot["edgesight"]["first_result_s"], 1.5, "≤", "s")
    return rows


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(markdown(results))


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def markdown(results: dict) -> str:
    machine, m = results["machine"], results["measurements"]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    lines = [
        f"# edgesight benchmark, {results['date']}",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['os']}; load average {machine['load_before']} before,"
        f" {machine['load_after']} after (other work shares this machine). Interpreter threads: {results['threads']}"
        f" (1 for freshness). {versions}. Plan: {results['plan']}. Written by `make bench` in {results['seconds']} s.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["target", "measured", "limit", "met"],
        [[t["target"], f"{t['value']}{t['unit']}", f"{t['sense']} {t['limit']}{t['unit']}",
          "yes" if t["met"] else "**no**"] for t in results["targets"]],
    )  # fmt: skip
    lines += [
        "## 1. Pipeline efficiency: `edgesight run` on a 480p video vs bare `set_tensor` + `invoke`",
        "",
        '*linear*: the same model with `interpolation = "linear"` in its contract (INTER_AREA costs'
        " 2 to 3 ms per 480p frame here).",
        "",
    ]
    lines += _table(
        ["model", "bare fps", "bare invoke ms", "edgesight fps", "efficiency", "edgesight linear fps",
         "efficiency linear"],
        [[k, v["bare_fps"], v["bare_invoke_ms"], v["edgesight"]["fps"], v["efficiency"],
          v["edgesight_linear"]["fps"], v["efficiency_linear"]] for k, v in m["pipeline_efficiency"].items()],
    )  # fmt: skip
    lines += [
        "## 2. The usual example loop vs `edgesight run`, 1080p video",
        "",
        "Latency: from the decoded frame to the result (preprocessing, invoke, top-k). *linear*: the same model"
        ' with `interpolation = "linear"` in its contract, the examples\' `cv2.resize` default; our bundles'
        " default to INTER_AREA.",
        "",
    ]
    lines += _table(
        ["model", "usual fps", "edgesight fps", "ratio", "edgesight linear fps", "ratio linear",
         "usual latency ms", "edgesight latency ms", "edgesight linear latency ms"],
        [[k, v["usual"]["fps"], v["edgesight"]["fps"], v["throughput_ratio"], v["edgesight_linear"]["fps"],
          v["throughput_ratio_linear"], v["usual"]["latency_ms_p50"], v["edgesight"]["latency_ms_p50"],
          v["edgesight_linear"]["latency_ms_p50"]] for k, v in m["usual_loop"].items()],
    )  # fmt: skip
    lines += [
        "## 3. Preprocessing one frame to int8 RGB (ms, median)",
        "",
        "Both resize with INTER_AREA, our bundles' default contract; *ours, linear*: a bundle whose contract"
        ' says `interpolation = "linear"`.',
        "",
    ]
    lines += _table(
        ["frame → input", "ours", "usual (INTER_AREA + float)", "same tensor", "ours, linear"],
        [[k.replace("->", " → ") + "²", v["ours_ms"], v["usual_ms"], "yes" if v["identical"] else "no",
          v["ours_linear_ms"]] for k, v in m["preprocessing"].items()],
    )  # fmt: skip
    fresh = m["freshness"]
    lines += [
        f"## 4. Freshness: a live MJPEG stream at {fresh['fps']} fps on 127.0.0.1, {fresh['model']} on 1 thread",
        "",
        "Frame age: from the stream producing the frame to its result line arriving, measured alike for both."
        " Inference: the daemon's `latency_ms` (preprocessing, invoke, top-k). *own age*: the daemon's"
        " `frame_age_ms` (from capture, so without the decoding); *age / inference*: each result's age over its"
        " own inference time.",
        "",
    ]
    rows = []
    for size, programs in fresh["streams"].items():
        ours, usual = programs["edgesight"], programs["usual"]
        rows.append(
            [
                size,
                "edgesight",
                ours["fps"],
                f"{ours['latency_ms_p50']} / {ours['latency_ms_p99']}",
                f"{ours['frame_age_ms']['p50']} / {ours['frame_age_ms']['p99']}",
                f"{ours['reported_frame_age_ms']['p50']} / {ours['reported_frame_age_ms']['p99']}",
                f"{ours['age_over_latency']['p50']} / {ours['age_over_latency']['p99']}",
            ]
        )
        rows.append(
            [
                size,
                "usual loop",
                usual["fps"],
                f"{usual['latency_ms_p50']} / {usual['latency_ms_p99']}",
                f"{usual['frame_age_ms']['p50']} / {usual['frame_age_ms']['p99']}",
                "",
                "",
            ]
        )
    lines += _table(
        ["stream", "program", "results/s", "inference ms p50 / p99", "frame age ms p50 / p99", "own age ms",
         "age / inference"],
        rows,
    )  # fmt: skip
    foot = m["footprint"]
    lines += [f"## 5. Footprint: {foot['model']}, {foot['video']} video", ""]
    lines += _table(
        ["program", "peak RSS MB", "of which private MB", "first result s"],
        [[k, foot[k]["peak_rss_mb"], foot[k]["peak_private_mb"], foot[k]["first_result_s"]]
         for k in ("edgesight", "usual_litert", "usual_tensorflow")],
    )  # fmt: skip
    imports = ", ".join(f"{k} {v}" for k, v in foot["imports_peak_rss_mb"].items())
    lines += [f"Peak RSS (MB) of a process that only imports, cumulatively: {imports}.", ""]
    lines += ["## 6. int8 vs float", ""]
    lines += _table(
        ["model", "int8 KB", "float KB", "int8 invoke ms", "float invoke ms"],
        [[k, v["int8_kb"], v["float_kb"], v["int8_invoke_ms"], v["float_invoke_ms"]]
         for k, v in m["int8_vs_float"].items()],
    )  # fmt: skip
    return "\n".join(lines)
