"""Running a program that prints one JSON line per result, and measuring it from the outside.

Both ``edgesight run`` and the usual example loop are measured the same way: when each line arrives,
the peak RSS the kernel recorded for the process, and the time from launch to the first result.
"""

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WARMUP_RESULTS = 5  # the first invokes allocate and pack weights: left out of rates


@dataclass(frozen=True)
class ProgramRun:
    launched: float  # time.monotonic() just before the process was started
    arrivals: list[float]  # time.monotonic() at which each result line was read
    records: list[dict]
    peak_rss_mb: float
    returncode: int

    @property
    def first_result_s(self) -> float:
        return self.arrivals[0] - self.launched if self.arrivals else float("nan")

    def rate(self) -> float:
        """Results per second in the steady state (after the warm-up results)."""
        skip = min(WARMUP_RESULTS, max(0, len(self.arrivals) - 2))
        span = self.arrivals[-1] - self.arrivals[skip] if len(self.arrivals) > 1 else 0.0
        return (len(self.arrivals) - 1 - skip) / span if span > 0 else float("nan")

    def latency_ms(self, q: float = 50) -> float:
        values = [r["latency_ms"] for r in self.records[WARMUP_RESULTS:] or self.records]
        return float(np.percentile(values, q)) if values else float("nan")


def daemon_config(path: Path, source: str, model: Path, threads: int, pace: bool = False) -> Path:
    """A minimal ``edgesight run`` config: results as JSON lines on stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[source]\nuri = "{source}"\npace = {str(pace).lower()}\n\n[model]\npath = "{model}"\nthreads = {threads}\n'
    )
    return path


def edgesight_run(config: Path) -> list[str]:
    return [str(BIN / "edgesight"), "run", "--config", str(config), "--log-level", "warning"]


def usual_loop(model: Path, source: str, threads: int, runtime: str = "litert") -> list[str]:
    return [
        str(BIN / "python"), "-m", "bench.usual", "--model", str(model), "--source", source,
        "--threads", str(threads), "--runtime", runtime,
    ]  # fmt: skip


def run_program(
    command: list[str], log: Path, limit: int = 0, duration_s: float = 0.0, timeout_s: float = 300.0
) -> ProgramRun:
    """Run ``command`` until it exits, ``limit`` results or ``duration_s`` seconds (then SIGTERM);
    stderr goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    arrivals: list[float] = []
    records: list[dict] = []
    with log.open("w") as stderr:
        launched = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
        # A program that hangs is killed at the deadline; the lines read so far still count.
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        ending = threading.Timer(duration_s, process.terminate)
        if duration_s:
            ending.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                arrivals.append(time.monotonic())
                records.append(json.loads(line))
                if limit and len(records) == limit:
                    process.terminate()
                    break
            process.stdout.close()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
            ending.cancel()
    # ru_maxrss is in kilobytes on Linux.
    return ProgramRun(launched, arrivals, records, usage.ru_maxrss / 1024, process.returncode)


def bare_rate(model: Path, threads: int, invokes: int) -> tuple[float, float]:
    """The bare interpreter loop: ``set_tensor`` + ``invoke`` on one reused input. (per second, ms each)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    tensor = np.zeros(detail["shape"], detail["dtype"])
    for _ in range(WARMUP_RESULTS):
        interpreter.set_tensor(detail["index"], tensor)
        interpreter.invoke()
    started = time.perf_counter()
    for _ in range(invokes):
        interpreter.set_tensor(detail["index"], tensor)
        interpreter.invoke()
    elapsed = time.perf_counter() - started
    return invokes / elapsed, elapsed / invokes * 1000
