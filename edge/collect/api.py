"""The JSON API under ``/api/dataset``, apart from any server: the /label page and ``edgesight pull-data``
use it; ``edge.publish.http`` maps requests onto ``DatasetApi.handle`` behind the same bearer token.

    GET  /api/dataset                        counts: classes, inbox, undo depth, collector, running burst
    GET  /api/dataset/inbox?limit=N          inbox items, least confident first (no suggestion: least of all)
    GET  /api/dataset/inbox/<id>.jpg         an inbox image
    GET  /api/dataset/images/<class>/<sha256>.jpg
    POST /api/dataset/label     {"ids": [...], "label": "open"}
    POST /api/dataset/discard   {"ids": [...]}
    POST /api/dataset/undo
    POST /api/dataset/classes   {"name": "open"}
    POST /api/dataset/rename    {"from": "open", "to": "opened"}
    POST /api/dataset/capture   {"label": "open", "count": 1, "interval_s": 0.5}  202: the burst's job
    GET  /api/dataset/capture/<id>?after=N   the job: state, kept, new, the frames numbered above N
    POST /api/dataset/capture/<id>/stop      end a burst early (what it kept stays kept)
    POST /api/dataset/export    {"have": [sha256, ...]}  a tar stream of the rest (GET: everything)
"""

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from io import BufferedIOBase
from typing import Any
from urllib.parse import parse_qs, unquote

from edge.collect.burst import LatestFrame, LiveFrame, burst
from edge.collect.dataset import IMAGE_NAME, class_problem
from edge.collect.inbox import ITEM_ID, Item
from edge.collect.jobs import BurstJob, BurstJobs
from edge.collect.labelling import Labelling

PREFIX = "/api/dataset"
MAX_BODY_BYTES = 8_000_000  # an export's "have" list of 100 000 hashes fits
MAX_BURST = 1000
LIST_LIMIT = 500
SHA256 = re.compile(r"^[0-9a-f]{64}$")
FRAME_WAIT_S = 10.0  # a burst ends when no new frame comes for this long


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "application/json"
    stream: Callable[[BufferedIOBase], None] | None = None  # writes the body after the headers, not ``body``
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def json_reply(document: Any, status: HTTPStatus = HTTPStatus.OK, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(document, separators=(",", ":")).encode(), headers=headers)


def error_reply(status: HTTPStatus, message: str) -> Reply:
    return json_reply({"error": message}, status)


class DatasetApi:
    """``frames``: the live frames for "capture now" and bursts (None where there is no camera);
    ``collector_counters``: what the collector kept and skipped, for the counts."""

    def __init__(
        self,
        labelling: Labelling,
        frames: LatestFrame | None = None,
        collector_counters: Callable[[], dict[str, Any] | None] | None = None,
        jpeg_quality: int = 90,
    ) -> None:
        self.labelling, self.frames = labelling, frames
        self.collector_counters = collector_counters
        self.jpeg_quality = jpeg_quality
        self.bursts = BurstJobs()

    def close(self, timeout: float = 5.0) -> None:
        """Stop a running burst (the daemon is stopping) and wait for it up to ``timeout`` seconds."""
        self.bursts.close(timeout)

    def handle(self, method: str, target: str, body: bytes = b"") -> Reply:
        path, _, query = target.partition("?")
        try:
            return self._route(method, unquote(path), parse_qs(query), body)
        except ApiError as e:
            return error_reply(e.status, str(e))

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        parts = path.removeprefix(PREFIX).strip("/").split("/") if path != PREFIX else []
        if method == "GET":
            if not parts:
                return json_reply(self.counts())
            if parts == ["inbox"]:
                return json_reply(self.inbox(int(_first(query, "limit", str(LIST_LIMIT)))))
            if len(parts) == 2 and parts[0] == "inbox":
                return self._inbox_image(parts[1])
            if len(parts) == 3 and parts[0] == "images":
                return self._dataset_image(parts[1], parts[2])
            if parts == ["export"]:
                return self._export(frozenset())
            if len(parts) == 2 and parts[0] == "capture":
                return json_reply(self._job(parts[1]).to_json(int(_first(query, "after", "0"))))
        elif method == "POST":
            document = _json(body)
            actions: dict[str, Callable[[dict[str, Any]], Reply]] = {
                "label": self._label,
                "discard": self._discard,
                "undo": self._undo,
                "classes": self._create_class,
                "rename": self._rename,
                "capture": self._capture,
                "export": lambda d: self._export(frozenset(_strings(d, "have", SHA256))),
            }
            if len(parts) == 1 and parts[0] in actions:
                return actions[parts[0]](document)
            if len(parts) == 3 and parts[0] == "capture" and parts[2] == "stop":
                job = self._job(parts[1])
                job.stop.set()
                return json_reply(job.to_json(job.count))
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such endpoint: {method} {path}")

    def counts(self) -> dict[str, Any]:
        labelling = self.labelling
        classes = labelling.dataset.classes()
        return {
            "classes": [{"name": name, "count": count} for name, count in classes.items()],
            "labelled": sum(classes.values()),
            "inbox": {
                "count": len(labelling.inbox),
                "bytes": labelling.inbox.used_bytes,
                "max_bytes": labelling.inbox.max_bytes,
                "evicted": labelling.inbox.evicted,
            },
            "discarded": len(labelling.discarded),
            "undo": labelling.undo_depth,
            "collector": self.collector_counters() if self.collector_counters else None,
            "live": self.frames is not None,
            "burst": running.id if (running := self.bursts.running()) else None,
        }

    def inbox(self, limit: int) -> dict[str, Any]:
        items = sorted(self.labelling.inbox.items(), key=_least_confident_first)
        return {"total": len(items), "items": [_item_json(item) for item in items[: max(0, limit)]]}

    def _inbox_image(self, name: str) -> Reply:
        key = name.removesuffix(".jpg")
        jpeg = self.labelling.inbox.read(key) if ITEM_ID.match(key) and name.endswith(".jpg") else None
        if jpeg is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no inbox image {name}")
        return Reply(HTTPStatus.OK, jpeg, "image/jpeg")

    def _dataset_image(self, label: str, name: str) -> Reply:
        known = IMAGE_NAME.match(name) and label in self.labelling.dataset.classes()
        jpeg = self.labelling.dataset.read(label, name[:-4]) if known else None
        if jpeg is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no image {label}/{name}")
        return Reply(HTTPStatus.OK, jpeg, "image/jpeg")

    def _label(self, document: dict[str, Any]) -> Reply:
        label = _string(document, "label")
        try:
            moved = self.labelling.label(_strings(document, "ids", ITEM_ID), label)
        except ValueError as e:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(e)) from e
        return json_reply({"labelled": moved, **self.counts()})

    def _discard(self, document: dict[str, Any]) -> Reply:
        moved = self.labelling.discard(_strings(document, "ids", ITEM_ID))
        return json_reply({"discarded": moved, **self.counts()})

    def _undo(self, _document: dict[str, Any]) -> Reply:
        action = self.labelling.undo()
        if action is None:
            raise ApiError(HTTPStatus.CONFLICT, "nothing to undo")
        undone = {"kind": action.kind, "count": len(action.moved), "ids": [m.item_id for m in action.moved]}
        return json_reply({"undone": undone, **self.counts()})

    def _create_class(self, document: dict[str, Any]) -> Reply:
        try:
            created = self.labelling.dataset.create_class(_string(document, "name"))
        except ValueError as e:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(e)) from e
        return json_reply({"created": created, **self.counts()}, HTTPStatus.CREATED if created else HTTPStatus.OK)

    def _rename(self, document: dict[str, Any]) -> Reply:
        old, new = _string(document, "from"), _string(document, "to")
        try:
            self.labelling.rename_class(old, new)
        except KeyError as e:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no class {old!r}") from e
        except ValueError as e:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(e)) from e
        return json_reply(self.counts())

    def _capture(self, document: dict[str, Any]) -> Reply:
        """Start frames straight into a class: 202 with the job to poll (a burst takes time)."""
        label = _string(document, "label")
        count = int(_number(document, "count", 1, 1, MAX_BURST))
        interval_s = _number(document, "interval_s", 0.5, 0.0, 3600.0)
        frames = self.frames
        if frames is None:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "no live frames here to capture from")
        problem = class_problem(label)
        if problem:
            raise ApiError(HTTPStatus.BAD_REQUEST, problem)

        def work(job: BurstJob) -> None:
            def next_frame(index: int, timeout: float) -> LiveFrame | None:
                """The next new frame; None as soon as the job is stopped (the daemon may be stopping)."""
                deadline = time.monotonic() + timeout
                while not job.stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    frame = frames.wait_newer(index, min(left, 0.25))
                    if frame is not None:
                        return frame
                return None

            burst(
                next_frame, self.labelling, label, count, interval_s, quality=self.jpeg_quality,
                timeout_s=FRAME_WAIT_S, stop=job.stop, on_kept=job.on_kept, undoable=count == 1,
            )  # fmt: skip

        job = self.bursts.start(BurstJob(label, count, interval_s), work)
        if job is None:
            running = self.bursts.running()
            which = f" ({PREFIX}/capture/{running.id})" if running else ""
            raise ApiError(HTTPStatus.CONFLICT, f"a burst is running{which}; wait for it to end or stop it")
        return json_reply(job.to_json(), HTTPStatus.ACCEPTED, (("Location", f"{PREFIX}/capture/{job.id}"),))

    def _job(self, job_id: str) -> BurstJob:
        job = self.bursts.get(job_id)
        if job is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no burst {job_id} (only the last few are kept)")
        return job

    def _export(self, have: frozenset[str]) -> Reply:
        return Reply(HTTPStatus.OK, content_type="application/x-tar", stream=lambda out: self._write_export(out, have))

    def _write_export(self, out: BufferedIOBase, have: frozenset[str]) -> None:
        # Not under the labelling lock: a slow network would hold up the page; images labelled or
        # undone while the stream runs are simply in it or not.
        self.labelling.dataset.export(out, have)


def _least_confident_first(item: Item) -> tuple[float, str]:
    score = item.sample.score
    return (-1.0 if score is None else score, item.id)


def _item_json(item: Item) -> dict[str, Any]:
    sample = item.sample
    return {
        "id": item.id,
        "captured": sample.captured,
        "reason": sample.reason,
        "suggestion": [[label, score] for label, score in sample.suggestion],
        "suggested": sample.suggested,
        "score": sample.score,
        "source": sample.source,
        "device": sample.device,
        "frame": sample.frame,
    }


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as e:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({e})") from e
    if not isinstance(document, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return document


def _first(query: dict[str, list[str]], name: str, default: str) -> str:
    value = query.get(name, [default])[0]
    if not value.isdigit():
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} must be a whole number (got {value!r})")
    return value


def _string(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(HTTPStatus.BAD_REQUEST, f'send "{name}" as a non-empty string')
    return value.strip()


def _strings(document: dict[str, Any], name: str, pattern: re.Pattern[str]) -> list[str]:
    values = document.get(name, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and pattern.match(v) for v in values):
        raise ApiError(HTTPStatus.BAD_REQUEST, f'send "{name}" as a list of ids such as {pattern.pattern}')
    return values


def _number(document: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = document.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError(HTTPStatus.BAD_REQUEST, f'"{name}" must be a number within {low:g}..{high:g} (got {value!r})')
    return float(value)
