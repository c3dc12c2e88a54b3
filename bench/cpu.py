"""CPU time per frame, measured so that other work on the machine hardly moves it.

Wall-clock rates on a shared machine swing with whatever else runs; the CPU time the kernel charges to
a process does much less. A program is run twice over the same kind of input, a long and a short run,
and its CPU per frame is ``(CPU of the long run - CPU of the short run) / (frames of the long - of the
short)``: start-up (imports, model load, first invokes) and shutdown cancel out. Programs are measured
interleaved and the whole round repeated; each figure is the median over the rounds, with its range,
and each ratio is taken within a round (programs measured minutes apart never meet in one ratio).
"""

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.programs import ProgramRun, run_program


@dataclass(frozen=True)
class Measured:
    """One program, measured once (a long and a short run, one after the other)."""

    cpu_ms: float  # user + sys per frame, start-up removed
    fps: float  # wall clock, steady state of the long run
    load: float  # the 1-minute load average while it ran
    run: ProgramRun  # the long run

    def row(self) -> dict:
        return {"cpu_ms": round(self.cpu_ms, 4), "fps": round(self.fps, 2), "load": round(self.load, 2)}


def difference(command_for: Callable[[int], list[str]], frames: tuple[int, int], log: Path) -> Measured:
    """``command_for(n)`` runs a program over ``n`` frames that prints one line per result."""
    short, long = (run_program(command_for(n), log.with_suffix(f".{n}.log")) for n in frames)
    for run, n in ((short, frames[0]), (long, frames[1])):
        if run.returncode != 0 or len(run.records) != n:
            raise SystemExit(f"{log.stem}: {len(run.records)} results of {n}, exit {run.returncode}; see {log}.*")
    cpu_ms = (long.cpu_s - short.cpu_s) / (frames[1] - frames[0]) * 1000
    return Measured(cpu_ms, long.rate(), (short.load + long.load) / 2, long)


def reported(command: list[str], log: Path) -> Measured:
    """A program that times its own steady loop (``bench.floor``) and prints one summary line."""
    run = run_program(command, log)
    if run.returncode != 0 or len(run.records) != 1:
        raise SystemExit(f"{log.stem}: exit {run.returncode}; see {log}")
    summary = run.records[0]
    cpu_ms = summary["cpu_s"] / summary["frames"] * 1000
    return Measured(cpu_ms, summary["frames"] / summary["wall_s"], run.load, run)


def stat(values: Sequence[float], digits: int = 3) -> dict:
    """Median and range of a figure over the rounds, and each round's value."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "rounds": [round(v, digits) for v in values],
    }


def program(rounds: Sequence[Measured]) -> dict:
    """A program's figures over the rounds."""
    return {
        "cpu_ms": stat([m.cpu_ms for m in rounds], 4),
        "fps": stat([m.fps for m in rounds], 2),
        "load": [round(m.load, 2) for m in rounds],
        "peak_rss_mb": round(max(m.run.peak_rss_mb for m in rounds), 1),
    }
