"""Which frames go into the inbox: one per interval, one when the scene changes, and with a model the
data loop's (low confidence, a change of state); never a near-copy of a frame kept recently."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.collect.inbox import Inbox, Item
from edge.collect.sample import Sample
from edge.collect.scene import RecentFrames, thumbnail
from edge.config import CollectConfig, DataLoopConfig

log = logging.getLogger(__name__)

CHANGE_CHECK_S = 0.2  # the scene is compared at most this often: a thumbnail is cheap, but not free on a Pi Zero


@dataclass(frozen=True)
class Origin:
    """Where the frames come from, written into every sample."""

    source: str = ""
    roi: tuple[int, ...] = ()
    device: str = ""


@dataclass(frozen=True)
class Suggestion:
    """The model's view of a frame: its top-k, best first, and whether the debounced state changed."""

    topk: tuple[tuple[str, float], ...]
    model: str = ""
    state_changed: bool = False


@dataclass
class CollectCounters:
    kept: dict[str, int] = field(default_factory=dict)  # by reason
    duplicates: int = 0  # skipped as near-copies of a recently kept frame
    failed: int = 0  # not written: the disk refused


class Collector:
    """Offered every frame; keeps the ones worth labelling in ``inbox``. One thread calls ``offer``.

    ``scene``: keep frames at ``collect.interval_s`` and on scene changes; without it only the data loop's
    frames are kept. ``collect`` always sets the near-copy threshold and the JPEG quality."""

    def __init__(
        self,
        inbox: Inbox,
        origin: Origin,
        collect: CollectConfig,
        dataloop: DataLoopConfig | None = None,
        *,
        scene: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inbox, self.origin, self.collect, self.dataloop = inbox, origin, collect, dataloop
        self.scene, self.clock = scene, clock
        self.counters = CollectCounters()
        self._recent = RecentFrames()
        self._next_interval = self._next_change_check = 0.0
        self._last_kept = self._last_dataloop = -float("inf")

    def offer(
        self, image: np.ndarray, captured: float, frame: int, suggestion: Suggestion | None = None
    ) -> Item | None:
        """Keep the frame (already cropped to the roi) if it is worth it; the kept item, else None."""
        now = self.clock()
        reasons, look = self._due(now, suggestion)
        if not reasons and not look:
            return None
        thumb = thumbnail(image)
        # The first frame is a change only when nothing else keeps it: there is no scene before it.
        first = not self._recent and self.collect.interval_s > 0
        if look and not first and self._recent.since_last(thumb) >= self.collect.change:
            reasons.append("change")
        if not reasons:
            return None
        if "interval" in reasons:
            self._next_interval = now + self.collect.interval_s
        if self._recent.nearest(thumb) < self.collect.duplicate:
            self.counters.duplicates += 1
            return None
        reason = next(r for r in ("state", "low", "change", "interval") if r in reasons)
        item = self._keep(image, captured, frame, reason, suggestion)
        if item is not None:
            self._recent.add(thumb)
            self._last_kept = now
            if reason in ("state", "low"):
                self._last_dataloop = now
        return item

    def _due(self, now: float, suggestion: Suggestion | None) -> tuple[list[str], bool]:
        """Why this frame may be kept before looking at it, and whether to look for a scene change."""
        reasons, look = [], False
        dataloop = self.dataloop
        if dataloop and suggestion and suggestion.topk and now - self._last_dataloop >= dataloop.min_interval_s:
            if suggestion.state_changed and dataloop.on_change:
                reasons.append("state")
            elif suggestion.topk[0][1] < dataloop.below:
                reasons.append("low")
        collect = self.collect
        if self.scene and now - self._last_kept >= collect.min_interval_s:
            if collect.interval_s and now >= self._next_interval:
                reasons.append("interval")
            if collect.on_change and now >= self._next_change_check:
                self._next_change_check = now + CHANGE_CHECK_S
                look = True
        return reasons, look

    def _keep(
        self, image: np.ndarray, captured: float, frame: int, reason: str, suggestion: Suggestion | None
    ) -> Item | None:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.collect.jpeg_quality])
        sample = Sample(
            captured=captured,
            reason=reason,
            source=self.origin.source,
            roi=self.origin.roi,
            device=self.origin.device,
            frame=frame,
            suggestion=suggestion.topk if suggestion else (),
            model=suggestion.model if suggestion else "",
        )
        try:
            if not ok:
                raise OSError("JPEG encoding failed")
            item = self.inbox.put(encoded.tobytes(), sample)
        except OSError as e:
            self.counters.failed += 1
            log.warning("collect: frame %d not kept (%s); %d failures so far", frame, e, self.counters.failed)
            return None
        if item is not None:
            self.counters.kept[reason] = self.counters.kept.get(reason, 0) + 1
        return item
