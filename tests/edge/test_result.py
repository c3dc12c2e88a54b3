"""The per-frame result record: frozen, one JSON form with rounded numbers and optional fields only when set."""

import dataclasses
import json

import numpy as np
import pytest

from edge.postprocess import UNKNOWN, Classification
from edge.result import Result, Smoothed

BASE_KEYS = ["ts", "frame", "label", "score", "topk", "latency_ms", "frame_age_ms", "state", "state_changed"]


def result(**changes) -> Result:
    values = {
        "ts": 1764061200.12345,
        "frame": 7,
        "label": "cat",
        "score": 0.912345,
        "topk": (("cat", 0.912345), ("dog", 0.087655)),
        "latency_ms": 1.23456,
        "frame_age_ms": 4.56,
        "state": "cat",
        "state_changed": True,
    }
    return Result(**{**values, **changes})


def test_json_has_the_daemons_keys_in_order_with_rounded_numbers():
    document = result().to_json()
    assert list(document) == BASE_KEYS
    assert document == {
        "ts": 1764061200.123,
        "frame": 7,
        "label": "cat",
        "score": 0.9123,
        "topk": [["cat", 0.9123], ["dog", 0.0877]],
        "latency_ms": 1.235,
        "frame_age_ms": 4.56,
        "state": "cat",
        "state_changed": True,
    }


def test_a_frame_is_never_reported_younger_than_the_inference_on_it():
    # A frame taken the moment it was captured: its age exceeds the latency by microseconds.
    document = result(latency_ms=0.70712, frame_age_ms=0.70749).to_json()
    assert document["frame_age_ms"] >= document["latency_ms"]


def test_path_and_smoothed_appear_only_when_set():
    document = result(path="photos/a.jpg", smoothed=Smoothed("dog", 0.612345)).to_json()
    assert list(document) == ["ts", "frame", "path", *BASE_KEYS[2:], "smoothed"]
    assert document["path"] == "photos/a.jpg" and document["smoothed"] == {"label": "dog", "score": 0.6123}


def test_encoded_is_the_compact_json_computed_once():
    record = result(state=None, state_changed=False)
    assert json.loads(record.encoded) == record.to_json() and b" " not in record.encoded
    assert record.encoded is record.encoded
    assert json.loads(record.encoded)["state"] is None


def test_the_record_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        result().label = "dog"  # type: ignore[misc]


def test_a_classification_below_the_threshold_is_unknown_with_its_score_kept():
    classification = Classification("cat", 0.55, (("cat", 0.55), ("dog", 0.45)), 1.0, np.asarray([0.55, 0.45]))
    assert classification.thresholded(0.55) is classification  # at the threshold: kept
    below = classification.thresholded(0.6)
    assert (below.label, below.score, below.topk) == (UNKNOWN, 0.55, classification.topk)
    assert below.to_json()["label"] == UNKNOWN
