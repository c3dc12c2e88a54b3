"""pull-data merges a device's labelled images into a workstation folder, idempotent by content hash:
over the device's own command (HOST=local, as ssh runs it), from an http:// URL with a token, from a tar."""

import hashlib
import io
import json
import shutil
import subprocess
import tarfile

import pytest

from edge.collect.pull import local_hashes, merge
from edge.collect.sample import Sample
from tests.helpers import BIN, ROOT, assert_one_line_error, garage, jpeg, run_cli

pytestmark = pytest.mark.slow


def tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pull_local(device, into, *extra: str):
    return run_cli(
        "edgesight", "pull-data", "--from", "local", "--into", str(into),
        "--remote-edgesight", str(BIN / "edgesight"), "--remote-config", str(device.config), *extra,
    )  # fmt: skip


def test_pulling_over_the_devices_own_command_merges_and_pulling_again_adds_nothing(devices, tmp_path):
    device = devices("pi-garage", {"open": 3, "closed": 2})
    into = tmp_path / "data"
    result = pull_local(device, into)
    assert result.returncode == 0, result.stderr
    assert "local: 5 new image(s) into" in result.stderr and "(closed 2, open 3)" in result.stderr
    files = tree(into)
    images = {name: data for name, data in files.items() if name.endswith(".jpg")}
    assert {name.split("/")[1][:-4]: name.split("/")[0] for name in images} == device.hashes()
    assert all(hashlib.sha256(data).hexdigest() == name[-68:-4] for name, data in images.items())
    entries = [json.loads(line) for line in files["provenance.jsonl"].splitlines()]
    assert len(entries) == 5 and {e["device"] for e in entries} == {"pi-garage"}
    assert {e["pulled_from"] for e in entries} == {"local"} and all(e["path"] in images for e in entries)

    again = pull_local(device, into)
    assert again.returncode == 0 and "0 new image(s)" in again.stderr and "5 already there" not in again.stderr
    assert tree(into) == files  # not even the log grew: the device sent nothing the folder has


def test_a_pull_fetches_only_what_the_folder_lacks(devices, tmp_path):
    device = devices("pi-garage", {"open": 3})
    into = tmp_path / "data"
    pull_local(device, into)
    device.labelling.capture(jpeg(garage("closed", 777)), Sample(captured=1764061999.0, reason="capture"), "closed")
    result = pull_local(device, into)
    assert "1 new image(s)" in result.stderr and "(closed 1)" in result.stderr and "already there" in result.stderr


def test_the_export_falls_back_to_the_disk_when_the_daemon_does_not_answer(devices, tmp_path):
    device = devices("pi-garage", {"open": 2, "closed": 2})
    device.close()
    result = pull_local(device, tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "exporting from the disk instead" in result.stderr and "4 new image(s)" in result.stderr


def test_pulling_from_a_url_needs_the_daemons_token(devices, tmp_path):
    device = devices("pi-door", {"open": 2, "closed": 1})
    into = tmp_path / "data"
    refused = run_cli("edgesight", "pull-data", "--from", device.url, "--into", str(into))
    assert_one_line_error(refused, 78, "HTTP 401", "--token-file")
    (tmp_path / "token").write_text(device.token)
    result = run_cli(
        "edgesight", "pull-data", "--from", device.url, "--token-file", str(tmp_path / "token"), "--into", str(into)
    )
    assert result.returncode == 0 and "3 new image(s)" in result.stderr


def test_make_pull_data_refuses_the_sample_digits_folder_and_a_missing_host():
    for args in (["HOST=pi@x"], ["DATA=data/garage"]):
        command = ["make", "--no-print-directory", "pull-data", *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "usage: make pull-data HOST=" in result.stdout


def test_an_image_labelled_differently_here_keeps_the_local_label(devices, tmp_path):
    device = devices("pi-garage", {"open": 2})
    into = tmp_path / "data"
    sha, label = next(iter(device.hashes().items()))
    (into / "closed").mkdir(parents=True)
    shutil.copy(device.labelling.dataset.root / label / f"{sha}.jpg", into / "closed" / "my-photo.jpg")
    assert local_hashes(into) == {sha: "closed"}  # a file not named by its hash is hashed
    result = pull_local(device, into)
    assert "1 new image(s)" in result.stderr and "1 labelled differently here (local label kept)" in result.stderr
    assert f"{sha}: here closed, there open" in result.stderr and not (into / "open" / f"{sha}.jpg").exists()


def tar_of(members: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    out.seek(0)
    return out


def test_damaged_or_misnamed_members_are_refused_and_nothing_lands_outside(tmp_path):
    good = jpeg(garage("open", 1))
    sha = hashlib.sha256(good).hexdigest()
    stream = tar_of(
        [
            (f"open/{sha}.jpg", good),
            (f"open/{'0' * 64}.jpg", good),  # content does not match the name
            (f"../{sha}.jpg", good),
            (f"open/../../{sha}.jpg", good),
            ("train/" + sha + ".jpg", good),  # a split folder, not a class
            ("open/photo.jpg", good),
        ],
        links=(f"closed/{'1' * 64}.jpg",),
    )
    into = tmp_path / "ws" / "data"
    merged = merge(stream, into, "pi-x")
    assert merged.added == {"open": 1} and len(merged.rejected) == 6
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        f"ws/data/open/{sha}.jpg", "ws/data/provenance.jsonl",
    ]  # fmt: skip


def test_a_cut_short_export_keeps_what_arrived_whole_and_says_so(tmp_path, devices):
    device = devices("pi-garage", {"open": 4})
    out = io.BytesIO()
    device.labelling.dataset.export(out)
    data = out.getvalue()
    stream = io.BytesIO(data[: len(data) // 2])
    with pytest.raises(Exception, match="cut short") as error:
        merge(stream, tmp_path / "data", "pi-garage")
    assert getattr(error.value, "exit_code", None) == 65
    kept = [p for p in (tmp_path / "data").rglob("*.jpg")]
    assert 0 < len(kept) < 4 and all(hashlib.sha256(p.read_bytes()).hexdigest() == p.stem for p in kept)
    assert not [p for p in (tmp_path / "data").rglob(".*")]


def test_a_folder_with_its_own_split_is_refused(tmp_path, devices):
    device = devices("pi-garage", {"open": 1})
    for split in ("train", "val"):
        (tmp_path / "data" / split / "open").mkdir(parents=True)
    result = pull_local(device, tmp_path / "data")
    assert_one_line_error(result, 78, "holds train/val/test folders")
    assert list((tmp_path / "data" / "train" / "open").iterdir()) == []
