"""Labelling moves inbox pairs into dataset/<class>/<sha256>.jpg with their provenance; discard and undo."""

import hashlib
import io
import json
import tarfile

import pytest

from edge.collect.dataset import Dataset, class_problem
from edge.collect.labelling import Labelling
from edge.collect.sample import Sample
from tests.helpers import garage, jpeg


def sample(n: int, suggestion=(("open", 0.4), ("closed", 0.3))) -> Sample:
    return Sample(
        captured=1764061200.0 + n, reason="interval", source="camera 0", roi=(10, 20, 300, 200),
        device="pi-garage", frame=n, suggestion=suggestion, model="garage 1.0.0",
    )  # fmt: skip


@pytest.fixture
def labelling(tmp_path):
    labelling = Labelling(tmp_path, 20_000_000)
    labelling.items = [labelling.inbox.put(jpeg(garage("open", n)), sample(n)) for n in range(4)]
    return labelling


def provenance(labelling: Labelling) -> list[dict]:
    return list(labelling.dataset.provenance())


def test_labelling_moves_the_image_into_its_class_with_its_provenance(labelling, tmp_path):
    first, second = labelling.items[:2]
    assert labelling.label([first.id, second.id, "1764061299000-000000000000"], "open") == 2
    files = sorted((tmp_path / "dataset" / "open").iterdir())
    assert [p.name for p in files] == sorted(f"{i.sample.sha256}.jpg" for i in (first, second))
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.stem for p in files)
    assert labelling.inbox.get(first.id) is None and len(labelling.inbox) == 2
    entry = provenance(labelling)[0]
    assert entry["action"] == "label" and entry["label"] == "open" and entry["suggested"] == "open"
    assert entry["path"] == f"open/{first.sample.sha256}.jpg" and entry["time"].endswith("Z")
    assert entry["source"] == "camera 0" and entry["roi"] == [10, 20, 300, 200] and entry["device"] == "pi-garage"
    assert entry["captured"] == first.sample.captured and entry["suggestion"][0] == ["open", 0.4]


def test_undo_puts_labelled_images_back_in_the_inbox(labelling, tmp_path):
    item = labelling.items[0]
    labelling.label([item.id], "closed")
    action = labelling.undo()
    assert action.kind == "label" and labelling.inbox.get(item.id).sample == item.sample
    assert labelling.dataset.classes() == {"closed": 0} and labelling.undo() is None
    assert [e["action"] for e in provenance(labelling)] == ["label", "unlabel"]
    assert (tmp_path / "inbox" / f"{item.id}.jpg").read_bytes() == jpeg(garage("open", 0))


def test_undo_leaves_an_image_the_class_already_had(labelling):
    data = labelling.inbox.read(labelling.items[0].id)
    labelling.capture(data, sample(0), "open", undoable=False)  # the same image, by a burst
    labelling.label([labelling.items[0].id], "open")
    labelling.undo()
    assert labelling.dataset.classes() == {"open": 1} and labelling.inbox.get(labelling.items[0].id) is not None


def test_discard_and_undo(labelling, tmp_path):
    ids = [i.id for i in labelling.items[:3]]
    assert labelling.discard(ids) == 3 and len(labelling.inbox) == 1 and len(labelling.discarded) == 3
    assert labelling.dataset.classes() == {}
    assert labelling.undo().kind == "discard"
    assert sorted(i.id for i in labelling.inbox.items()) == sorted(i.id for i in labelling.items)
    assert len(labelling.discarded) == 0 and not list((tmp_path / "discarded").iterdir())


def test_capture_goes_straight_into_a_class_and_undo_removes_it(labelling):
    sha, created = labelling.capture(jpeg(garage("closed", 5)), sample(5, ()), "closed")
    assert created and labelling.dataset.images("closed") == [sha]
    assert labelling.undo().kind == "capture" and labelling.dataset.images("closed") == []


def test_a_rename_moves_the_folder_records_it_and_clears_the_history(labelling, tmp_path):
    labelling.label([labelling.items[0].id], "opne")
    labelling.rename_class("opne", "open")
    assert (tmp_path / "dataset" / "open").is_dir() and not (tmp_path / "dataset" / "opne").exists()
    assert provenance(labelling)[-1] | {"time": ""} == {"time": "", "action": "rename", "from": "opne", "to": "open"}
    assert labelling.undo() is None
    labelling.dataset.create_class("closed")
    with pytest.raises(ValueError, match="exists already"):
        labelling.rename_class("open", "closed")
    with pytest.raises(KeyError):
        labelling.rename_class("absent", "other")


@pytest.mark.parametrize("name", ["", "train", "Test", "unknown", "../etc", "a/b", ".hidden", " open", "x" * 65])
def test_names_that_cannot_be_class_folders_are_refused(labelling, name):
    assert class_problem(name) is not None
    with pytest.raises(ValueError):
        labelling.label([labelling.items[0].id], name)
    assert len(labelling.inbox) == 4


def test_class_names_people_use_are_accepted():
    assert all(class_problem(name) is None for name in ("open", "half-open", "Tür offen", "car 2", "v1.2"))


def test_opening_the_dataset_removes_half_written_images_and_closes_a_torn_log_line(tmp_path):
    dataset = Dataset(tmp_path)
    dataset.add(jpeg(garage("open", 0)), sample(0), "open")
    (tmp_path / "open" / f".{'0' * 64}.jpg.tmp").write_bytes(b"half")
    with (tmp_path / "provenance.jsonl").open("ab") as log:
        log.write(b'{"action":"label","pa')  # a power cut mid-line
    again = Dataset(tmp_path)
    again.add(jpeg(garage("open", 1)), sample(1), "open")
    assert [p.name for p in (tmp_path / "open").iterdir() if p.name.startswith(".")] == []
    assert [e["action"] for e in again.provenance()] == ["label", "label"] and again.classes() == {"open": 2}


def test_the_export_is_a_tar_of_the_images_not_had_with_their_provenance_first(labelling):
    labelling.label([i.id for i in labelling.items[:2]], "open")
    labelling.label([labelling.items[2].id], "closed")
    had = labelling.items[0].sample.sha256
    out = io.BytesIO()
    assert labelling.dataset.export(out, frozenset({had})) == 2
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
        lines = tar.extractfile("provenance.jsonl").read().decode().splitlines()
    assert names[:2] == ["index.json", "provenance.jsonl"] and len(names) == 4 and f"open/{had}.jpg" not in names
    assert {json.loads(line)["path"] for line in lines} == set(names[2:])
