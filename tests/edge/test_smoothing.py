"""Threshold, smoothing and debounce over sequences of per-frame scores."""

import numpy as np
import pytest

from edge.config import ResultsConfig
from edge.postprocess import UNKNOWN
from edge.smoothing import ResultFilter

LABELS = ("cat", "dog", "fox")


def scores(label: str, score: float = 0.9) -> np.ndarray:
    rest = (1 - score) / (len(LABELS) - 1)
    return np.asarray([score if name == label else rest for name in LABELS])


def run(config: ResultsConfig, frames: list[np.ndarray]) -> list:
    results = ResultFilter(config, LABELS)
    return [results.update(frame) for frame in frames]


def test_below_the_threshold_the_label_is_unknown():
    decisions = run(ResultsConfig(threshold=0.6), [scores("cat", 0.9), scores("dog", 0.5)])
    assert [d.label for d in decisions] == ["cat", UNKNOWN]
    assert decisions[1].score == pytest.approx(0.5)


def test_debounced_state_changes_only_after_n_agreeing_frames():
    frames = [scores("cat")] * 3 + [scores("dog")] * 2 + [scores("cat")] + [scores("dog")] * 3
    decisions = run(ResultsConfig(debounce=3), frames)
    assert [d.state for d in decisions] == [None, None, "cat", "cat", "cat", "cat", "cat", "cat", "dog"]
    assert [i for i, d in enumerate(decisions) if d.changed] == [2, 8]


def test_ema_smoothing_rides_out_a_single_odd_frame():
    frames = [scores("cat", 0.8)] * 4 + [scores("dog", 0.95)] + [scores("cat", 0.8)]
    assert [d.label for d in run(ResultsConfig(smoothing="ema", ema_alpha=0.3), frames)] == ["cat"] * 6
    assert run(ResultsConfig(), frames)[4].label == "dog"  # without smoothing the odd frame shows


def test_ema_follows_a_lasting_change():
    frames = [scores("cat")] * 3 + [scores("fox")] * 6
    labels = [d.label for d in run(ResultsConfig(smoothing="ema", ema_alpha=0.5), frames)]
    assert labels[:4] == ["cat"] * 4 and labels[-1] == "fox"


def test_majority_vote_over_the_window_with_the_newest_label_winning_ties():
    frames = [scores("cat"), scores("dog"), scores("cat"), scores("dog"), scores("dog")]
    labels = [d.label for d in run(ResultsConfig(smoothing="majority", window=3), frames)]
    assert labels == ["cat", "dog", "cat", "dog", "dog"]


def test_majority_counts_unknown_as_a_label():
    frames = [scores("cat", 0.4)] * 2 + [scores("cat", 0.9)]
    decisions = run(ResultsConfig(smoothing="majority", window=3, threshold=0.5), frames)
    assert [d.label for d in decisions] == [UNKNOWN, UNKNOWN, UNKNOWN]
    assert decisions[-1].state == UNKNOWN
