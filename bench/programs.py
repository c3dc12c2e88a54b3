"""Running a program that prints one JSON line per result, and measuring it from the outside.

Both ``edgesight run`` and the usual example loop are measured the same way: when each line arrives,
the peak RSS the kernel recorded for the process, and the time from launch to the first result.
"""

import json
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
RSS_POLL_S = 0.02


@dataclass(frozen=True)
class ProgramRun:
    launched: float  # time.monotonic() just before the process was started
    arrivals: list[float]  # time.monotonic() at which each result line was read
    records: list[dict]
    peak_rss_mb: float
    peak_anon_mb: float  # the private part of the RSS; the rest is shared library code and the mapped model
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


def daemon_config(path: Path, source: str, model: Path, threads: int) -> Path:
    """A minimal ``edgesight run`` config: an unpaced file or a stream; results as JSON lines on stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[source]\nuri = "{source}"\n\n[model]\npath = "{model}"\nthreads = {threads}\n')
    return path


def edgesight_run(config: Path) -> list[str]:
    return [str(BIN / "edgesight"), "run", "--config", str(config), "--log-level", "warning"]


def usual_loop(model: Path, source: str, threads: int, runtime: str = "litert") -> list[str]:
    return [
        str(BIN / "python"), "-m", "bench.usual", "--model", str(model), "--source", source,
        "--threads", str(threads), "--runtime", runtime,
    ]  # fmt: skip


def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """VmHWM, the peak RSS of the process's current program, and RssAnon, its private part now.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark across fork and exec, so a child of
    this (large) process would report at least our own size.
    """
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024


def _watch_peak(pid: int, peak: list[float], done: threading.Event) -> None:
    """Keep ``peak`` = [VmHWM, highest RssAnon seen] up to date while the process runs."""
    while not done.wait(RSS_POLL_S):
        try:
            high_water, anonymous = memory_mb(pid)
        except (FileNotFoundError, ProcessLookupError, KeyError):
            return
        peak[:] = [max(peak[0], high_water), max(peak[1], anonymous)]


def run_program(
    command: list[str], log: Path, limit: int = 0, duration_s: float = 0.0, timeout_s: float = 300.0
) -> ProgramRun:
    """Run ``command`` until it exits, ``limit`` results or ``duration_s`` seconds after its first result
    (then SIGTERM: a start slowed by a busy machine does not eat the window); stderr goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    arrivals: list[float] = []
    records: list[dict] = []
    with log.open("w") as stderr:
        launched = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
        # A program that hangs is killed at the deadline; the lines read so far still count.
        peak, exited = [0.0, 0.0], threading.Event()
        threading.Thread(target=_watch_peak, args=(process.pid, peak, exited), name="rss", daemon=True).start()
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        ending = threading.Timer(duration_s, process.terminate)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                arrivals.append(time.monotonic())
                records.append(json.loads(line))
                if duration_s and len(records) == 1:
                    ending.start()
                if limit and len(records) == limit:
                    process.terminate()
                    break
            process.stdout.close()
            process.wait()
        finally:
            exited.set()
            timer.cancel()
            ending.cancel()
    return ProgramRun(launched, arrivals, records, peak[0], peak[1], process.returncode)


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
