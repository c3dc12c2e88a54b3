"""From per-frame scores to a steady answer across frames: temporal smoothing and a debounced state.

A camera watching a scene sees the same thing for many frames; single frames flicker. Smoothing
(an EMA of the scores, or a majority vote over the last N labels) steadies the label, and the
debounced ``state`` changes only after N consecutive smoothed frames agree on a new label.
"""

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from edge.config import ResultsConfig
from edge.postprocess import label_or_unknown


@dataclass(frozen=True)
class Decision:
    label: str  # the smoothed label, "unknown" below the threshold
    score: float  # the smoothed label's score
    state: str | None  # the debounced label; None until enough frames agree
    changed: bool  # the state changed with this frame


class ResultFilter:
    """Stateful across frames, so one per stream; ``update`` takes each frame's probabilities."""

    def __init__(self, config: ResultsConfig, labels: tuple[str, ...]) -> None:
        self.config = config
        self.labels = labels
        self._ema: np.ndarray | None = None
        self._recent: deque[tuple[str, float]] = deque(maxlen=config.window)
        self.state: str | None = None
        self._pending: str | None = None
        self._run = 0

    def update(self, probabilities: np.ndarray) -> Decision:
        label, score = self._smoothed(np.asarray(probabilities, dtype=np.float64))
        changed = self._debounce(label)
        return Decision(label, score, self.state, changed)

    def _smoothed(self, probabilities: np.ndarray) -> tuple[str, float]:
        threshold = self.config.threshold
        if self.config.smoothing == "ema":
            alpha = self.config.ema_alpha
            self._ema = probabilities if self._ema is None else alpha * probabilities + (1 - alpha) * self._ema
            probabilities = self._ema
        best = int(np.argmax(probabilities))
        label, score = self.labels[best], float(probabilities[best])
        if self.config.smoothing != "majority":
            return label_or_unknown(label, score, threshold), score
        self._recent.append((label_or_unknown(label, score, threshold), score))
        votes = Counter(lbl for lbl, _ in self._recent)
        top = max(votes.values())
        # On a tie, the label seen most recently wins: it is the one the scene is moving towards.
        winner = next(lbl for lbl, _ in reversed(self._recent) if votes[lbl] == top)
        return winner, float(np.mean([s for lbl, s in self._recent if lbl == winner]))

    def _debounce(self, label: str) -> bool:
        if label == self.state:
            self._pending, self._run = None, 0
            return False
        if label == self._pending:
            self._run += 1
        else:
            self._pending, self._run = label, 1
        if self._run >= self.config.debounce:
            self.state, self._pending, self._run = label, None, 0
            return True
        return False
