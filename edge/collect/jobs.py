"""Bursts asked for over HTTP run in a thread of their own, one at a time: the request that starts one is
answered at once with the job's id, and the caller polls the job. A burst takes count x interval seconds;
held in a request, it would tie up one of the HTTP server's few handler threads (and the client's socket)
for all that time.
"""

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from edge.collect.burst import Kept

log = logging.getLogger(__name__)

KEEP_JOBS = 16  # finished jobs remembered for callers that poll late
State = Literal["running", "done", "stopped", "failed"]


class BurstJob:
    """One burst's progress, written by its thread and read by request threads."""

    def __init__(self, label: str, count: int, interval_s: float) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.label, self.count, self.interval_s = label, count, interval_s
        self.started = time.time()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._kept: list[Kept] = []
        self._state: State = "running"
        self._error: str | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state == "running"

    def on_kept(self, kept: Kept) -> None:
        with self._lock:
            self._kept.append(kept)

    def end(self, error: str | None = None) -> None:
        with self._lock:
            self._error = error
            self._state = "failed" if error else "stopped" if self.stop.is_set() else "done"

    def to_json(self, after: int = 0) -> dict[str, Any]:
        """The job as the API reports it; ``after``: only the frames numbered above it (what a poller lacks)."""
        with self._lock:
            kept, state, error = list(self._kept), self._state, self._error
        if state == "done" and len(kept) < self.count:
            error = f"the source stopped delivering frames after {len(kept)} of {self.count}"
        return {
            "id": self.id,
            "label": self.label,
            "count": self.count,
            "interval_s": self.interval_s,
            "started": self.started,
            "state": state,
            "done": state != "running",
            "kept": len(kept),
            "new": sum(k.new for k in kept),
            "error": error,
            "frames": [{"number": k.number, "sha256": k.sha256, "new": k.new} for k in kept if k.number > after],
        }


class BurstJobs:
    """Starts bursts in a thread, one at a time, and remembers the last few for polling."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, BurstJob] = OrderedDict()
        self._thread: threading.Thread | None = None

    def start(self, job: BurstJob, work: Callable[[BurstJob], None]) -> BurstJob | None:
        """Run ``work(job)`` in a thread; None (nothing started) while another burst runs."""
        with self._lock:
            if any(other.running for other in self._jobs.values()):
                return None
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                self._jobs.popitem(last=False)
            self._thread = threading.Thread(target=self._run, args=(job, work), name="burst", daemon=True)
            self._thread.start()
        return job

    def get(self, job_id: str) -> BurstJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self) -> BurstJob | None:
        with self._lock:
            return next((job for job in self._jobs.values() if job.running), None)

    def close(self, timeout: float = 5.0) -> None:
        """Stop a running burst at its next frame (what it kept stays kept) and wait for it."""
        job, thread = self.running(), self._thread
        if job is not None:
            job.stop.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self, job: BurstJob, work: Callable[[BurstJob], None]) -> None:
        try:
            work(job)
        except (OSError, ValueError) as e:  # a full disk, an image that cannot be encoded
            log.warning("burst into %s failed after %d frame(s): %s", job.label, job.to_json()["kept"], e)
            job.end(str(e))
        else:
            job.end()
        summary = job.to_json()
        log.info("burst into %s: %s, %d of %d kept", job.label, summary["state"], summary["kept"], job.count)
