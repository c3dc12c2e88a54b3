"""The benchmark runs end to end (``--quick``: the tiny model, few frames) and writes both results
files. Timings are not asserted: they depend on the machine and its load."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

MEASUREMENTS = {"pipeline_efficiency", "usual_loop", "preprocessing", "freshness", "footprint", "int8_vs_float"}


def test_quick_benchmark_writes_results_json_and_markdown(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--build", str(tmp_path / "build")]
    subprocess.run(command, cwd=ROOT, check=True, timeout=600, stdout=subprocess.DEVNULL)

    results = json.loads((tmp_path / "results.json").read_text())
    measured = results["measurements"]
    assert set(measured) == MEASUREMENTS
    assert results["threads"] == 2 and results["machine"]["cores"] and results["versions"]["ai-edge-litert"]
    # Every program measured produced results and exited cleanly.
    runs = [measured["pipeline_efficiency"]["tiny"]["edgesight"]]
    runs += [measured["freshness"]["streams"][size]["edgesight"] for size in ("720p", "1080p")]
    runs += [measured["usual_loop"]["tiny"][program] for program in ("edgesight", "edgesight_linear", "usual")]
    assert all(run["results"] > 0 and run["exit"] == 0 for run in runs)
    assert all(row["identical"] for row in measured["preprocessing"].values())
    markdown = (tmp_path / "results.md").read_text()
    assert "| target | measured | limit | met |" in markdown
    assert results["date"] in markdown
