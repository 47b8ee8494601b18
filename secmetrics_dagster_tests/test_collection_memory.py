"""The heap is frozen for the garbage collector while a pull runs (collection/memory.py heap_frozen), and thawed
when the last pull in the process ends, whether it succeeded or failed; a freeze made by the process itself is
left alone."""

from __future__ import annotations

import gc
import threading

import pytest

from secmetrics_dagster.collection.memory import heap_frozen
from secmetrics_dagster.sources.base import DatasetSpec, Source

from .harness import materialize_source
from .helpers import failure_text
from .test_stores_typed_views import ChangedResource

SEEN: dict[str, int] = {}


def _pull(pull):
    SEEN["during the pull"] = gc.get_freeze_count()
    pull.spool.extend([{"id": "a"}, {"id": "b"}])


def _failing_pull(pull):
    SEEN["during the failing pull"] = gc.get_freeze_count()
    raise RuntimeError("the vendor broke")


FROZEN = Source(
    group="frozen",
    title="Frozen heap",
    docs_url="https://example.invalid/docs",
    resource=ChangedResource,
    datasets=(
        DatasetSpec("frozen_things", "Things", "Two things.", "GET /things", pull=_pull),
        DatasetSpec("frozen_failing", "Failing", "Fails.", "GET /fails", pull=_failing_pull),
    ),
    sandbox_env=lambda url, token: {},
)


@pytest.fixture(autouse=True)
def _thawed():
    assert gc.get_freeze_count() == 0
    SEEN.clear()
    yield
    gc.unfreeze()


def test_the_heap_is_frozen_during_a_pull_and_thawed_after_it_whether_it_succeeds_or_fails(collection, file_stores):
    result = materialize_source(FROZEN, ChangedResource(), collection, file_stores)
    assert not result.success  # frozen_failing fails, with no backup to serve
    assert "the vendor broke" in failure_text(result)
    assert SEEN["during the pull"] > 1000 and SEEN["during the failing pull"] > 1000  # Dagster's objects, frozen
    assert gc.get_freeze_count() == 0


def test_the_heap_stays_frozen_until_the_last_of_two_overlapping_pulls_ends():
    first_in, second_out = threading.Event(), threading.Event()

    def other_pull():
        with heap_frozen():
            first_in.set()
            assert second_out.wait(10)

    other = threading.Thread(target=other_pull)
    other.start()
    assert first_in.wait(10)
    with heap_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() > 0  # the other pull still runs
    second_out.set()
    other.join()
    assert gc.get_freeze_count() == 0


def test_a_heap_the_process_froze_itself_stays_frozen():
    gc.freeze()
    frozen = gc.get_freeze_count()
    with heap_frozen():
        pass
    # Not `>= frozen`: a frozen object freed meanwhile by its reference count (another thread's) leaves the count.
    # Thawing would drop it to 0.
    assert frozen > 1000 and gc.get_freeze_count() > frozen // 2
