"""collection.threads: the ordered thread map SDK pulls fetch batches with, and the gate a token renewal runs behind."""

import threading
import time

import pytest

from secmetrics_dagster.collection.errors import CollectionError
from secmetrics_dagster.collection.threads import ExclusiveGate, fan_out, ordered_map

WAIT = 10  # seconds an event may take before a test gives up; never reached when the code is right


# ------------------------------------------------------------------------------------------ ordered_map


def test_detail_batches_in_flight_are_bounded_by_the_workers():
    taken = []

    def batches():
        for n in range(100):
            taken.append(n)
            yield n

    results = ordered_map(lambda n: n * 2, batches(), workers=4)
    assert next(results) == 0
    assert len(taken) == 5  # four workers busy and one queued, no more read ahead
    assert list(results) == [n * 2 for n in range(1, 100)]


def test_concurrent_detail_fetching_runs_batches_in_parallel():
    # Each batch waits for a barrier of three: it only passes if three run at the same time.
    barrier = threading.Barrier(3, timeout=WAIT)

    def fetch(n):
        barrier.wait()
        return n

    assert list(ordered_map(fetch, range(9), workers=3)) == list(range(9))


def test_results_come_in_input_order_even_when_later_items_finish_first():
    first_may_finish = threading.Event()
    finished = []

    def work(n):
        if n == 0:
            assert first_may_finish.wait(WAIT)
        else:
            finished.append(n)
            if len(finished) == 2:
                first_may_finish.set()  # items 1 and 2 are done before item 0
        return n

    assert list(ordered_map(work, range(3), workers=3)) == [0, 1, 2]
    assert finished == [1, 2] or finished == [2, 1]


def test_one_worker_runs_every_item_on_the_calling_thread():
    threads = list(ordered_map(lambda _: threading.current_thread(), range(3), workers=1))
    assert threads == [threading.current_thread()] * 3


def test_a_failing_item_raises_in_the_caller_and_no_later_item_is_started():
    started = []

    def work(n):
        started.append(n)
        if n == 1:
            raise ValueError("batch 1 failed")
        return n

    results = ordered_map(work, range(50), workers=2)
    assert next(results) == 0
    with pytest.raises(ValueError, match="batch 1 failed"):
        list(results)
    assert max(started) <= 4  # the bound: nothing beyond workers + 1 past the failure was ever submitted


def test_stopping_early_leaves_no_thread_running():
    before = threading.active_count()
    results = ordered_map(lambda n: n, range(100), workers=4)
    assert next(results) == 0
    results.close()  # the caller stops reading: the pool is shut down, waiting for its running items
    assert threading.active_count() == before


# ---------------------------------------------------------------------------------------------- fan_out


def _recording_fetch(started, release):
    def fetch(parent):
        started.append(parent)
        if parent == "p0":
            assert release.wait(WAIT)
        return parent.upper()

    return fetch


def test_fan_out_reads_the_first_parent_alone_then_the_rest_together():
    started, release = [], threading.Event()
    pairs = fan_out(_recording_fetch(started, release), [f"p{n}" for n in range(6)], 3, name="t", describe=str)
    reader = threading.Thread(target=lambda: started.append(("pairs", list(pairs))))
    reader.start()
    reader.join(0.3)  # time for the others to start, if the first did not hold them back
    assert started == ["p0"]
    release.set()
    reader.join(WAIT)
    assert started[-1] == ("pairs", [(f"p{n}", f"P{n}") for n in range(6)])


def test_fan_out_without_first_alone_starts_the_others_while_the_first_runs():
    started, release = [], threading.Event()
    pairs = fan_out(
        _recording_fetch(started, release), ["p0", "p1", "p2"], 3, name="t", describe=str, first_alone=False
    )
    reader = threading.Thread(target=lambda: list(pairs))
    reader.start()
    for _ in range(200):
        if len(started) == 3:
            break
        time.sleep(0.05)
    assert sorted(started) == ["p0", "p1", "p2"]
    release.set()
    reader.join(WAIT)


def test_fan_out_names_the_failing_parent_and_yields_nothing_after_it():
    def fetch(parent):
        if parent == 3:
            raise CollectionError("HTTP 500 from the API", status=500)
        return parent

    got = []
    with pytest.raises(CollectionError) as raised:
        for pair in fan_out(fetch, range(8), 2, name="t", describe=lambda n: f"Vendor: members of group {n}"):
            got.append(pair)
    assert got == [(0, 0), (1, 1), (2, 2)]
    assert str(raised.value) == "Vendor: members of group 3: HTTP 500 from the API"
    assert raised.value.status == 500


def test_fan_out_over_no_parents_yields_nothing():
    assert list(fan_out(lambda p: p, [], 4, name="t", describe=str)) == []


# ---------------------------------------------------------------------------------------- ExclusiveGate


def test_shared_holders_run_together():
    gate = ExclusiveGate()
    barrier = threading.Barrier(3, timeout=WAIT)

    def hold():
        with gate.shared():
            barrier.wait()  # passes only if all three are inside at once

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not barrier.broken


def test_exclusive_waits_for_every_shared_holder_to_leave():
    gate = ExclusiveGate()
    inside, release, order = threading.Event(), threading.Event(), []

    def reader():
        with gate.shared():
            inside.set()
            assert release.wait(WAIT)
            order.append("shared left")

    def writer():
        with gate.exclusive():
            order.append("exclusive entered")

    r = threading.Thread(target=reader)
    r.start()
    assert inside.wait(WAIT)
    w = threading.Thread(target=writer)
    w.start()
    while not (gate._waiting_exclusive or order):  # the writer queued, or (wrongly) went in
        w.join(0.001)
    assert order == []
    release.set()
    r.join(WAIT)
    w.join(WAIT)
    assert order == ["shared left", "exclusive entered"]


def test_a_waiting_exclusive_holds_new_shared_entries_back():
    # A renewal must not starve behind a steady stream of requests: once it waits, newcomers queue behind it.
    gate = ExclusiveGate()
    first_inside, release_first, order = threading.Event(), threading.Event(), []

    def first_reader():
        with gate.shared():
            first_inside.set()
            assert release_first.wait(WAIT)

    def writer():
        with gate.exclusive():
            order.append("exclusive")

    def late_reader():
        with gate.shared():
            order.append("late shared")

    t1 = threading.Thread(target=first_reader)
    t1.start()
    assert first_inside.wait(WAIT)
    w = threading.Thread(target=writer)
    w.start()
    while not gate._waiting_exclusive:  # the writer is queued (this spins on the gate's state, no sleep)
        w.join(0.001)
    t2 = threading.Thread(target=late_reader)
    t2.start()
    t2.join(0.2)  # a chance to slip in ahead of the waiting writer, if the gate let it
    assert order == []
    release_first.set()
    for t in (t1, w, t2):
        t.join(WAIT)
    assert order == ["exclusive", "late shared"]


def test_exclusive_holders_never_overlap():
    gate = ExclusiveGate()
    inside, overlaps = [0], []
    lock = threading.Lock()

    def renew():
        for _ in range(200):
            with gate.exclusive():
                with lock:
                    inside[0] += 1
                    overlaps.append(inside[0] > 1)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=renew) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(overlaps) == 800 and not any(overlaps)
