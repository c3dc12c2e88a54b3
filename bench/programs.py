"""Running a program that prints one JSON line per result, and measuring it from the outside.

Every program is measured the same way: when each line arrives, the CPU time the kernel charged to the
process (user + sys, all its threads, from ``wait4``), its peak RSS, the time from launch to the first
result, and the machine's load average while it ran.
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
RSS_POLL_S = 0.02
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProgramRun:
    launched: float  # time.monotonic() just before the process was started
    arrivals: list[float]  # time.monotonic() at which each result line was read
    records: list[dict]
    peak_rss_mb: float
    peak_anon_mb: float  # the private part of the RSS; the rest is shared library code and the mapped model
    returncode: int
    cpu_s: float  # user + sys of the whole process, start-up and shutdown included
    load: float  # the 1-minute load average, averaged over the run
    samples: list[tuple[float, float, int]]  # (time.monotonic(), CPU seconds so far, results read so far)

    @property
    def first_result_s(self) -> float:
        return self.arrivals[0] - self.launched if self.arrivals else float("nan")

    def rate(self) -> float:
        """Results per second in the steady state (after the warm-up results)."""
        skip = min(WARMUP_RESULTS, max(0, len(self.arrivals) - 2))
        span = self.arrivals[-1] - self.arrivals[skip] if len(self.arrivals) > 1 else 0.0
        return (len(self.arrivals) - 1 - skip) / span if span > 0 else float("nan")

    def steady_cpu_ms(self) -> float:
        """CPU per result between the warm-up and the last sample (for runs that end by time, not by input)."""
        steady = [(cpu, n) for _, cpu, n in self.samples if n > WARMUP_RESULTS]
        if len(steady) < 2 or steady[-1][1] == steady[0][1]:
            return float("nan")
        return (steady[-1][0] - steady[0][0]) / (steady[-1][1] - steady[0][1]) * 1000

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


def floor_decode(source: str) -> list[str]:
    return [str(BIN / "python"), "-m", "bench.floor", "decode", "--source", source]


def floor_invoke(model: Path, threads: int, seconds: float) -> list[str]:
    return [
        str(BIN / "python"), "-m", "bench.floor", "invoke", "--model", str(model),
        "--threads", str(threads), "--seconds", str(seconds),
    ]  # fmt: skip


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


def cpu_seconds(pid: int) -> float:
    """User + sys so far of a running process, all threads (``/proc/PID/stat``, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class _Watch:
    """Samples a running process every ``RSS_POLL_S``: peak memory, CPU against results read, load."""

    def __init__(self, pid: int, results: list) -> None:
        self.pid, self.results = pid, results
        self.peak, self.loads = [0.0, 0.0], [os.getloadavg()[0]]
        self.samples: list[tuple[float, float, int]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(RSS_POLL_S):
            try:
                high_water, anonymous = memory_mb(self.pid)
                self.samples.append((time.monotonic(), cpu_seconds(self.pid), len(self.results)))
            except (FileNotFoundError, ProcessLookupError, KeyError, IndexError):
                return
            self.peak[:] = [max(self.peak[0], high_water), max(self.peak[1], anonymous)]
            self.loads.append(os.getloadavg()[0])

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def run_program(
    command: list[str], log: Path, limit: int = 0, duration_s: float = 0.0, timeout_s: float = 600.0
) -> ProgramRun:
    """Run ``command`` until it exits, ``limit`` results or ``duration_s`` seconds after its first result
    (then SIGTERM: a start slowed by a busy machine does not eat the window); stderr goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    arrivals: list[float] = []
    records: list[dict] = []
    with log.open("w") as stderr:
        launched = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
        watch = _Watch(process.pid, records)
        # A program that hangs is killed at the deadline; the lines read so far still count.
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
            # wait4, not wait: the kernel's account of the child's CPU time comes with its exit status.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            watch.stop()
            timer.cancel()
            ending.cancel()
    return ProgramRun(
        launched,
        arrivals,
        records,
        watch.peak[0],
        watch.peak[1],
        process.returncode,
        cpu_s=usage.ru_utime + usage.ru_stime,
        load=sum(watch.loads) / len(watch.loads),
        samples=watch.samples,
    )
