"""The sink contract: submit never blocks, the oldest items go first when full, the rest arrive in order."""

import logging
import threading

from edge.publish.base import Sink
from tests.helpers import wait_for


class GatedSink(Sink):
    """Delivers into a list, but each delivery waits for the test to open the gate (a stuck destination)."""

    def __init__(self, queue_size: int) -> None:
        super().__init__("gated", queue_size)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.delivered: list[int] = []

    def _deliver(self, item: dict) -> None:
        self.entered.set()
        self.gate.wait()
        if item["n"] < 0:
            raise OSError("destination refused it")
        self.delivered.append(item["n"])


def test_a_stuck_destination_drops_the_oldest_and_counts_them():
    sink = GatedSink(queue_size=3)
    sink.start()
    sink.submit({"n": 0})
    assert sink.entered.wait(10)  # the worker holds item 0 and is stuck
    for n in range(1, 10):
        sink.submit({"n": n})  # returns at once although the destination is stuck
    counters = sink.counters()
    assert (counters.submitted, counters.dropped, counters.queued) == (10, 6, 3)
    sink.gate.set()
    wait_for(lambda: sink.counters().queued == 0, what="the queue to drain")
    sink.close(timeout=5)
    assert sink.delivered == [0, 7, 8, 9]
    assert sink.counters().delivered == 4


def test_failures_are_counted_and_logged_once_per_episode(caplog):
    caplog.set_level(logging.INFO)
    sink = GatedSink(queue_size=10)
    sink.gate.set()
    sink.start()
    for n in (1, -1, -2, 2):
        sink.submit({"n": n})
    sink.close(timeout=5)
    counters = sink.counters()
    assert (counters.delivered, counters.failed, counters.dropped) == (2, 2, 0)
    assert sink.delivered == [1, 2]
    assert caplog.text.count("delivery failing") == 1 and "delivering again" in caplog.text


def test_close_counts_what_it_could_not_deliver_as_dropped():
    sink = GatedSink(queue_size=10)
    sink.start()
    for n in range(4):
        sink.submit({"n": n})
    assert sink.entered.wait(10)
    closer = threading.Thread(target=sink.close, kwargs={"timeout": 0.2})
    closer.start()
    wait_for(lambda: sink.counters().dropped == 3 or not closer.is_alive(), what="close to give up")
    closer.join(10)
    sink.gate.set()  # the stuck delivery ends after close gave up on it: counted, not lost
    wait_for(lambda: sink.counters().delivered == 1, what="the stuck item")
    counters = sink.counters()
    assert (counters.dropped, counters.queued, counters.failed) == (3, 0, 0)
