"""The /label page in headless Chromium, driven by real clicks and key presses: the inbox least confident
first with the suggestion pre-selected, digits, x, u, Enter, multi-select, new and renamed classes,
counts, and "capture now" from the live view."""

import pytest

from edge.collect.api import DatasetApi
from edge.collect.burst import LatestFrame, LiveFrame
from edge.collect.collector import Origin
from edge.collect.labelling import Labelling
from edge.collect.sample import Sample
from edge.publish.http import HttpServer
from edge.publish.settings import HttpSettings
from edge.state import LiveState
from tests.helpers import garage, jpeg
from tests.parts import Browser

pytestmark = [pytest.mark.slow, pytest.mark.system]

SCORES = [0.9, 0.2, None, 0.6, 0.45]  # None: collected without a model


@pytest.fixture
def page(tmp_path):
    labelling = Labelling(tmp_path / "state", 20_000_000)
    labelling.dataset.create_class("closed")
    labelling.dataset.create_class("open")
    items = []
    for n, score in enumerate(SCORES):
        suggestion = (("open", score), ("closed", round(1 - score, 2))) if score is not None else ()
        sample = Sample(captured=1764061200.0 + n, reason="interval", suggestion=suggestion)
        items.append(labelling.inbox.put(jpeg(garage("open" if n % 2 else "closed", n)), sample))
    frames = LatestFrame()
    frames.publish(LiveFrame(garage("open", 99), 1764061300.0, 99, Origin("camera 0")))
    server = HttpServer(HttpSettings(port=0), LiveState("pi-test"), dataset=DatasetApi(labelling, frames))
    server.start()
    browser = Browser(tmp_path / "profile")
    browser.open(server.url + "/label")
    browser.wait_until("document.querySelectorAll('.tile img[src^=\"blob:\"]').length === 5", "the inbox images")
    yield browser, labelling, items
    browser.close()
    server.close()


def tiles(browser) -> list[str]:
    return browser.evaluate("[...document.querySelectorAll('.tile')].map(t => t.dataset.id)")


def test_the_grid_shows_the_least_confident_first_with_the_suggestion_preselected(page):
    browser, _, items = page
    assert tiles(browser) == [items[i].id for i in (2, 1, 4, 3, 0)]
    pre = browser.evaluate(
        "[...document.querySelectorAll('.tile')].map(t => t.querySelector('.choice.pre')?.textContent)"
    )
    assert pre == [None, "2 open", "2 open", "2 open", "2 open"]  # the first was collected without a model
    assert browser.evaluate("document.getElementById('summary').textContent") == "5 in the inbox · 0 labelled"


def test_a_click_a_digit_enter_and_undo_label_images_into_their_folders(page, tmp_path):
    browser, labelling, items = page
    dataset = tmp_path / "state" / "dataset"
    browser.click(f".tile[data-id='{items[2].id}'] .choice")  # the first class: closed
    browser.wait_until("document.querySelectorAll('.tile').length === 4", "the labelled tile to go")
    assert [p.stem for p in (dataset / "closed").iterdir()] == [items[2].sample.sha256]

    browser.press("2")  # the focused tile (now the first, items[1]) as class 2: open
    browser.wait_until("document.querySelectorAll('.tile').length === 3", "the key to label")
    assert [p.stem for p in (dataset / "open").iterdir()] == [items[1].sample.sha256]

    browser.press("u")
    browser.wait_until("document.querySelectorAll('.tile').length === 4", "the undo")
    assert list((dataset / "open").iterdir()) == [] and labelling.inbox.get(items[1].id) is not None

    browser.press("Enter")  # accept the suggestion of the focused tile
    browser.wait_until("document.querySelectorAll('.tile').length === 3", "the suggestion to be accepted")
    assert [p.stem for p in (dataset / "open").iterdir()] == [items[1].sample.sha256]
    counts = browser.evaluate("[...document.querySelectorAll('#classes li')].map(l => l.textContent)")
    assert counts == ["1closed1label✎", "2open1label✎"]


def test_several_picked_are_labelled_or_discarded_together(page, tmp_path):
    browser, labelling, items = page
    browser.click(f".tile[data-id='{items[4].id}'] img")
    browser.click(f".tile[data-id='{items[0].id}'] img", ctrl=True)
    assert browser.evaluate("document.querySelectorAll('.tile.selected').length") == 2
    browser.press("x")
    browser.wait_until("document.querySelectorAll('.tile').length === 3", "the discard")
    assert len(labelling.discarded) == 2 and labelling.dataset.classes() == {"closed": 0, "open": 0}
    browser.press("a")
    browser.press("1")
    browser.wait_until("document.querySelectorAll('.tile').length === 0", "all to be labelled")
    assert len(list((tmp_path / "state" / "dataset" / "closed").iterdir())) == 3
    assert browser.evaluate("document.getElementById('empty').hidden") is False


def test_a_new_class_gets_the_next_digit_and_a_rename_moves_its_folder(page, tmp_path):
    browser, _, items = page
    browser.click("#new-class-name")
    browser.type("person in front")
    browser.press("Enter")
    browser.wait_until("document.querySelectorAll('#classes li').length === 3", "the new class")
    browser.click("body")
    browser.press("3")  # classes sort by name: closed, open, person in front
    browser.wait_until("document.querySelectorAll('.tile').length === 4", "the label into the new class")
    assert [p.stem for p in (tmp_path / "state" / "dataset" / "person in front").iterdir()] == [items[2].sample.sha256]
    browser.click("#classes li[data-name='person in front'] .rename")
    browser.evaluate("document.querySelector('.rename-input').select()")
    browser.type("ajar")
    browser.press("Enter")
    browser.wait_until("!!document.querySelector('#classes li[data-name=\"ajar\"]')", "the rename")
    assert browser.evaluate("[...document.querySelectorAll('#classes .name')].map(n => n.textContent)") == [
        "ajar", "closed", "open",
    ]  # fmt: skip
    dataset = tmp_path / "state" / "dataset"
    assert (dataset / "ajar" / f"{items[2].sample.sha256}.jpg").is_file()
    assert not (dataset / "person in front").exists()


def test_capture_now_puts_the_live_frame_into_the_chosen_class(page):
    browser, labelling, _ = page
    browser.evaluate("document.getElementById('capture-class').value = 'open'")
    browser.click("#capture-now")
    browser.wait_until("document.getElementById('note').textContent.includes('captured 1 image as open')", "capture")
    assert len(labelling.dataset.images("open")) == 1
    entry = list(labelling.dataset.provenance())[-1]
    assert entry["reason"] == "capture" and entry["frame"] == 99 and entry["source"] == "camera 0"
