"""The benchmark runs end to end (``--quick``: the tiny model, few frames) and writes both results
files. Timings are not asserted: they depend on the machine and its load."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

MEASUREMENTS = {"per_frame", "usual_loop", "preprocessing", "freshness", "footprint", "int8_vs_float", "training"}


def test_quick_benchmark_writes_results_json_and_markdown(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--build", str(tmp_path / "build")]
    subprocess.run(command, cwd=ROOT, check=True, timeout=600, stdout=subprocess.DEVNULL)

    results = json.loads((tmp_path / "results.json").read_text())
    measured = results["measurements"]
    assert set(measured) == MEASUREMENTS
    assert results["threads"] == 2 and results["machine"]["cores"] and results["versions"]["ai-edge-litert"]
    # Every program measured used CPU time for its frames (a failed run stops the benchmark).
    programs = [
        *measured["per_frame"]["tiny"]["programs"].values(),
        *measured["usual_loop"]["tiny"]["programs"].values(),
    ]
    assert len(programs) == 6 and all(p["cpu_ms"]["median"] > 0 and p["fps"]["median"] > 0 for p in programs)
    streams = measured["freshness"]["streams"].values()
    assert all(
        s["edgesight"]["results"] > 0 and s["edgesight"]["exit"] == 0 and s["usual"]["results"] > 0 for s in streams
    )
    assert all(row["v1_equals_usual"] for row in measured["preprocessing"].values())
    training = measured["training"]["models"]["tiny 16²"]
    assert training["bare_steps_per_s"]["median"] > 0 and training["fit_cpu_ms_per_step"]["median"] > 0
    assert results["ratios"] and all(r["median"] > 0 for r in results["ratios"].values())
    markdown = (tmp_path / "results.md").read_text()
    assert "| target | measured | limit | met |" in markdown
    assert results["date"] in markdown
