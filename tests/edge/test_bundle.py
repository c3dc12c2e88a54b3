import hashlib
import json

import pytest

from edge.bundle import (
    SCHEMA_VERSION,
    GoldenSample,
    load_bundle,
    manifest_to_dict,
    read_manifest,
)
from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.preprocess import CONTRACT_VERSION
from tests.helpers import MODEL, edit_manifest, manifest, written


def test_manifest_round_trips_through_the_bundle(tmp_path):
    bundle = load_bundle(written(tmp_path))
    png_sha256 = hashlib.sha256(b"png").hexdigest()
    assert bundle.manifest == manifest(golden=(GoldenSample("golden/00_cat.png", "cat", (100.0, -100.0), png_sha256),))
    assert (bundle.path / "labels.txt").read_text() == "cat\ndog\n"
    assert json.loads((bundle.path / "manifest.json").read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("kind", ["probabilities", "logits", "auto"])
def test_every_scores_kind_round_trips(tmp_path, kind):
    assert load_bundle(written(tmp_path, scores=kind)).manifest.scores == kind


def test_a_manifest_built_with_an_unknown_scores_kind_is_refused():
    with pytest.raises(ValueError, match="scores must be one of probabilities, logits, auto"):
        manifest(scores="odds")


def test_rewriting_a_bundle_replaces_it_whole(tmp_path):
    written(tmp_path)
    bundle = written(tmp_path, labels=("a", "b"))
    assert read_manifest(bundle).labels == ("a", "b")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging directory left behind


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["preprocess"].pop("height"), "preprocess.height is missing"),
        (lambda d: d["preprocess"].update(color="bgr"), "color must be one of rgb, grayscale"),
        (lambda d: d["input"].update(dtype="float16"), "input.dtype must be one of int8, uint8, float32"),
        (lambda d: d["input"].update(zero_point="0"), "input.zero_point must be an integer"),
        (lambda d: d.update(labels=[]), "labels must be a non-empty list"),
        (lambda d: d.update(scores="odds"), "scores must be one of probabilities, logits, auto"),
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this edgesight reads"),
        (lambda d: d["golden"][0].pop("label"), "golden[0].label is missing"),
        (lambda d: d["preprocess"].update(version=3), "preprocess: version must be one of 1, 2 (got 3)"),
    ],
)
def test_invalid_manifest_names_the_key(tmp_path, change, message):
    bundle = written(tmp_path)
    edit_manifest(bundle, change)
    with pytest.raises(EdgesightError, match=r"manifest\.json") as error:
        load_bundle(bundle)
    assert message in str(error.value)
    assert error.value.exit_code == EXIT_DATA


def test_a_replaced_model_fails_the_sha256_check(tmp_path):
    bundle = written(tmp_path)
    (bundle / "model.tflite").write_bytes(MODEL + b"!")
    with pytest.raises(EdgesightError, match=r"sha256 .* does not match"):
        load_bundle(bundle)


def test_labels_file_must_agree_with_the_manifest(tmp_path):
    bundle = written(tmp_path)
    (bundle / "labels.txt").write_text("dog\ncat\n")
    with pytest.raises(EdgesightError, match="labels disagree"):
        load_bundle(bundle)


def test_missing_golden_image_is_refused(tmp_path):
    bundle = written(tmp_path)
    (bundle / "golden" / "00_cat.png").unlink()
    with pytest.raises(EdgesightError, match="golden sample missing"):
        load_bundle(bundle)


def test_an_edited_golden_file_is_named_as_a_modified_bundle_not_a_runtime_fault(tmp_path):
    bundle = written(tmp_path)
    (bundle / "golden" / "00_cat.png").write_bytes(b"png, edited")
    with pytest.raises(EdgesightError) as edited:
        load_bundle(bundle)
    assert "golden/00_cat.png: golden sample changed since the bundle was written" in str(edited.value)
    assert "the bundle was modified, not the runtime" in str(edited.value)
    assert edited.value.exit_code == EXIT_DATA


def test_a_bundle_written_before_golden_hashes_were_recorded_still_loads(tmp_path):
    bundle = written(tmp_path)
    edit_manifest(bundle, lambda d: [sample.pop("sha256") for sample in d["golden"]])
    (bundle / "golden" / "00_cat.png").write_bytes(b"png, edited")  # nothing to tell it by: the golden check will
    assert load_bundle(bundle).manifest.golden[0].sha256 == ""


def test_missing_directory_and_non_bundle(tmp_path):
    with pytest.raises(EdgesightError) as missing:
        load_bundle(tmp_path / "nope")
    assert missing.value.exit_code == EXIT_NO_INPUT
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesightError, match="not a bundle"):
        load_bundle(tmp_path / "empty")


def test_manifest_json_is_not_an_object(tmp_path):
    bundle = written(tmp_path)
    (bundle / "manifest.json").write_text("[1, 2]")
    with pytest.raises(EdgesightError, match="must be an object"):
        load_bundle(bundle)
    (bundle / "manifest.json").write_text("{broken")
    with pytest.raises(EdgesightError, match="unreadable manifest"):
        load_bundle(bundle)


def test_manifest_dict_starts_with_the_schema_version():
    assert next(iter(manifest_to_dict(manifest()))) == "schema_version"


def test_a_new_bundle_records_the_current_preprocessing_contract_version(tmp_path):
    data = json.loads((written(tmp_path) / "manifest.json").read_text())
    assert data["preprocess"]["version"] == CONTRACT_VERSION and data["schema_version"] == SCHEMA_VERSION == 2


def test_a_manifest_from_before_contract_versions_keeps_version_1(tmp_path):
    """Old bundles resize exactly as they did when they were trained."""
    bundle = written(tmp_path)

    def schema_1(data: dict) -> None:
        data.update(schema_version=1)
        del data["preprocess"]["version"]

    edit_manifest(bundle, schema_1)
    manifest = read_manifest(bundle)
    assert manifest.preprocess.version == 1 and manifest.schema_version == 1
