"""Bundles are checked in a child process, so a corrupt model can only crash the child."""

import hashlib
import json
import shutil

import pytest

from edge.errors import EdgesightError
from edge.verify import verify_in_child

pytestmark = pytest.mark.slow


def test_a_good_bundle_passes(digits_bundle):
    verify_in_child(digits_bundle)


def test_a_corrupt_flatbuffer_with_a_matching_checksum_is_refused_with_the_reason(digits_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    model = bundle / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4096] = b"\xff" * 4096
    model.write_bytes(bytes(data))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["model_sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgesightError, match="refused: "):
        verify_in_child(bundle)


def test_a_tampered_model_fails_on_its_checksum(digits_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    (bundle / "model.tflite").write_bytes(b"TFL3" + b"\0" * 64)
    with pytest.raises(EdgesightError, match="sha256"):
        verify_in_child(bundle)
