"""The fan-out: every configured store is written at the same time, each on its own, the results in store order.

The stand-in stores here implement the Store interface themselves; they coordinate through threading.Event with
a timeout, so a fan-out that wrote the stores one after another fails (it never hangs) instead of passing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import pytest

from secmetrics_dagster.collection.redact import Redactor
from secmetrics_dagster.stores import StoreError, UploadRef, fan_out, write_everywhere
from secmetrics_dagster.stores.base import Store, StoreResult
from secmetrics_dagster.stores.io_manager import store_metadata
from secmetrics_dagster.stores.verify import stores_written

from .helpers import make_snapshot

WAIT = 10.0  # seconds a stand-in waits for another store; only a sequential fan-out ever waits this long


class StandIn(Store):
    """A store whose write runs `during(snapshot, envelope)` between announcing its start and finishing."""

    def __init__(self, name: str, during: Callable[[Path], None] = lambda _e: None, *, envelope: bool = False):
        self.name = name
        self.during = during
        self.wants_envelope = envelope
        self.started = threading.Event()
        self.finished = threading.Event()
        self.thread: Optional[str] = None
        self.envelope: Optional[Path] = None
        self.envelope_text: Optional[str] = None

    def describe(self) -> str:
        return f"the {self.name} stand-in"

    @property
    def needs_envelope(self) -> bool:
        return self.wants_envelope

    def write(self, snapshot, envelope: Optional[Path]) -> StoreResult:
        self.thread = threading.current_thread().name
        self.envelope = envelope
        if envelope is not None:
            self.envelope_text = envelope.read_text()
        self.started.set()
        try:
            self.during(envelope)
        finally:
            self.finished.set()
        return StoreResult(self.name, f"{self.name}://{snapshot.upload_id}", snapshot.records, 7, 0.01)

    def read(self, ref: UploadRef) -> Iterator[dict]:
        return iter(())

    def count(self, ref: UploadRef) -> int:
        return 0


def waits_for(event: threading.Event, what: str) -> Callable[[Optional[Path]], None]:
    def during(_envelope: Optional[Path]) -> None:
        if not event.wait(WAIT):
            raise StoreError(f"{what} did not happen while this store was writing: the stores ran one at a time")

    return during


def test_every_store_is_written_while_the_others_are_being_written(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    stores: list[StandIn] = []
    # Each store finishes only once every store has started: possible only when all run at once.
    everyone_started = threading.Event()

    def all_started(_envelope):
        if all(s.started.is_set() for s in stores):
            everyone_started.set()
        waits_for(everyone_started, "every store starting")(_envelope)

    stores.extend(StandIn(name, all_started) for name in ("first", "second", "third", "fourth"))
    outcome = fan_out(snapshot, stores)
    assert outcome.failures == {}
    assert [r.store for r in outcome.results] == ["first", "second", "third", "fourth"]
    assert len({s.thread for s in stores}) == 4  # a thread per store


def test_a_failing_store_does_not_stop_the_stores_writing_beside_it(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    failing_started = threading.Event()

    def fail(_envelope):
        failing_started.set()
        raise StoreError("the disk is gone")

    failing = StandIn("broken", fail)
    # Written beside the failing store: it finishes only after that one has started (and so failed).
    beside = StandIn("beside", waits_for(failing_started, "the broken store starting"))
    after = StandIn("after")
    lines: list[str] = []
    outcome = fan_out(snapshot, [beside, failing, after], log=lines.append)
    assert [r.store for r in outcome.results] == ["beside", "after"]
    assert outcome.failures == {"broken": "StoreError: the disk is gone"}
    assert lines == ["snyk_issues: the broken stand-in failed: the disk is gone"]
    with pytest.raises(
        StoreError, match=r"broken store failed: StoreError: the disk is gone\. Stores written: beside, after"
    ):
        outcome.raise_for_failures(snapshot, "Fix it")


def test_results_and_metadata_follow_the_stores_order_not_the_order_they_finish_in(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    last = StandIn("third")
    middle = StandIn("second", waits_for(last.finished, "the third store finishing"))
    first = StandIn("first", waits_for(middle.finished, "the second store finishing"))
    outcome = fan_out(snapshot, [first, middle, last])  # they finish third, second, first
    assert [r.store for r in outcome.results] == ["first", "second", "third"]
    table = store_metadata(snapshot, outcome)["stores"]
    assert [row.data["store"] for row in table.records] == ["first", "second", "third"]


def test_failures_are_reported_in_the_stores_order_not_the_order_they_fail_in(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    second_failed = threading.Event()

    def second(_envelope):
        second_failed.set()
        raise StoreError("second cause")

    def first(_envelope):
        waits_for(second_failed, "the second store failing")(_envelope)
        raise StoreError("first cause")

    lines: list[str] = []
    outcome = fan_out(snapshot, [StandIn("one", first), StandIn("two", second)], log=lines.append)
    assert list(outcome.failures) == ["one", "two"]
    assert lines == [
        "snyk_issues: the one stand-in failed: first cause",
        "snyk_issues: the two stand-in failed: second cause",
    ]


def test_the_envelope_is_rendered_once_and_shared_by_the_stores_that_ship_it(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    both_started = threading.Event()
    stores: list[StandIn] = []

    def together(_envelope):
        if all(s.started.is_set() for s in stores):
            both_started.set()
        waits_for(both_started, "both envelope stores starting")(_envelope)

    stores.extend([StandIn("a", together, envelope=True), StandIn("b", together, envelope=True)])
    plain = StandIn("c")
    outcome = fan_out(snapshot, [*stores, plain])
    assert outcome.failures == {}
    a, b = stores
    assert a.envelope is not None and a.envelope == b.envelope  # one file, read by both at the same time
    assert a.envelope_text == b.envelope_text and '"upload_id": "' + snapshot.upload_id + '"' in a.envelope_text
    assert plain.envelope is None  # a store that loads from the spool is not handed it
    assert not a.envelope.exists()  # removed once every store is done
    assert [p.name for p in a.envelope.parent.iterdir()] == [snapshot.spool_path.name]


def test_the_stores_that_load_from_the_spool_start_before_the_envelope_is_rendered(tmp_path, monkeypatch):
    from secmetrics_dagster.stores import io_manager

    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    database, shipped = StandIn("database"), StandIn("file", envelope=True)
    render = io_manager.render_envelope
    seen: list[bool] = []

    def render_once_the_database_loads(snap):
        seen.append(database.started.wait(WAIT))  # a fan-out that rendered first would wait here in vain
        return render(snap)

    monkeypatch.setattr(io_manager, "render_envelope", render_once_the_database_loads)
    outcome = fan_out(snapshot, [shipped, database])
    assert seen == [True] and outcome.failures == {}
    assert [r.store for r in outcome.results] == ["file", "database"]
    assert shipped.envelope_text is not None and '"upload_id": "' + snapshot.upload_id + '"' in shipped.envelope_text


def test_a_store_error_quoting_a_secret_is_masked_in_the_failure_and_the_log(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])

    def leak(_envelope):
        raise StoreError("connection to postgres://u:hunter2-secret@db failed")

    lines: list[str] = []
    outcome = fan_out(
        snapshot, [StandIn("ok"), StandIn("pg", leak)], log=lines.append, redactor=Redactor(["hunter2-secret"])
    )
    assert "hunter2-secret" not in repr(outcome.failures) + repr(lines)
    assert outcome.failures == {"pg": "StoreError: connection to postgres://u:***@db failed"}


def test_one_store_alone_is_written_in_the_callers_thread(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    only = StandIn("only")
    assert [r.store for r in fan_out(snapshot, [only]).results] == ["only"]
    assert only.thread == threading.current_thread().name


def test_write_everywhere_fills_all_four_real_stores_at_once_and_discards_the_spool(tmp_path, all_stores, pg_params):
    snapshot = make_snapshot(tmp_path, [{"id": i, "name": f"issue {i}"} for i in range(300)])
    lines: list[str] = []
    outcome = write_everywhere(snapshot, all_stores, lines.append)
    assert outcome.failures == {} and lines == []
    assert [r.store for r in outcome.results] == ["file", "s3", "postgres", "duckdb"]
    assert all(r.records == 300 for r in outcome.results)
    locations = {r.store: r.location for r in outcome.results}
    ref = UploadRef(snapshot.tag, snapshot.tenancy, snapshot.upload_id, locations)
    assert {store.name: store.count(ref) for store in all_stores.build()} == {
        "file": 300,
        "s3": 300,
        "postgres": 300,
        "duckdb": 300,
    }
    assert not snapshot.spool_path.exists()
    written = stores_written(store_metadata(snapshot, outcome))
    for store in ("file", "s3", "postgres", "duckdb"):
        row = written[store]
        assert row["records"] == 300 and row["bytes"] > 0 and row["seconds"] >= 0
