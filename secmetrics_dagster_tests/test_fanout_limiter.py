"""The shared rate limiter of HttpSession and the fan-out helpers of collection.threads, on a fake clock."""

import threading

import pytest

from secmetrics_dagster.collection.errors import AuthError, CollectionError
from secmetrics_dagster.collection.http import RateLimiter, endpoint_family, server_clock
from secmetrics_dagster.collection.threads import naming, ordered_map


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []
        self._lock = threading.Lock()

    def clock(self):
        return self.now

    def sleep(self, seconds):
        with self._lock:
            self.sleeps.append(round(seconds, 3))
            self.now += seconds


def limiter(fake) -> RateLimiter:
    return RateLimiter("Vendor", sleep=fake.sleep, clock=fake.clock)


def test_requests_of_one_endpoint_family_share_a_bucket_whatever_the_ids():
    assert endpoint_family("GET", "/api/v1/users/00u1a/factors") == endpoint_family(
        "get", "/api/v1/users/00u2b/factors"
    )
    assert endpoint_family("GET", "/api/v1/users/00u1a/factors") != endpoint_family("GET", "/api/v1/users/00u1a/roles")


def test_the_window_is_counted_down_by_requests_sent_and_pauses_at_the_reserve_until_the_reset():
    fake = FakeTime()
    rl = limiter(fake)
    rl.quota("f", limit=10, remaining=5, window=2000.0, reset_in=3.0, reserve=2)
    for _ in range(3):  # 5 left, 2 kept: three may leave before any answer says more
        assert rl.before("f") == 0
    assert rl.before("f") == pytest.approx(3.0)
    assert fake.sleeps == [3.0] and rl.pauses == 1 and rl.paused_seconds == pytest.approx(3.0)


def test_requests_in_flight_at_a_new_windows_first_answer_are_charged_to_that_window():
    # Eight workers leave together when a window reopens (nothing known of it yet). The first answer counts only
    # itself: the seven still in flight will land in the same window, so 10 - 1 - 7 = 2 are left, the reserve.
    fake = FakeTime()
    rl = limiter(fake)
    rl.quota("f", limit=10, remaining=2, window=2000.0, reset_in=1.0, reserve=2)
    for _ in range(8):
        rl.before("f")  # the first waits out the reset; the other seven leave with it
    assert rl.pauses == 1
    rl.quota("f", limit=10, remaining=9, window=2001.0, reset_in=1.0, reserve=2)
    rl.done("f")
    assert rl.before("f") > 0 and rl.pauses == 2  # at the reserve: the ninth waits for the next window


def test_answered_requests_are_no_longer_charged_to_the_next_window():
    fake = FakeTime()
    rl = limiter(fake)
    for _ in range(3):
        rl.before("f")
        rl.done("f")
    rl.quota("f", limit=10, remaining=9, window=2000.0, reset_in=1.0, reserve=2)
    for _ in range(7):  # 9 left, 2 kept: seven may leave
        assert rl.before("f") == 0
    assert rl.before("f") > 0


def test_an_answer_reporting_less_than_counted_lowers_the_count():
    fake = FakeTime()
    rl = limiter(fake)
    rl.quota("f", limit=10, remaining=9, window=2000.0, reset_in=3.0, reserve=2)
    rl.quota("f", limit=10, remaining=3, window=2000.0, reset_in=3.0, reserve=2)  # others use the org's quota too
    assert rl.before("f") == 0
    assert rl.before("f") > 0


def test_late_answers_of_a_window_already_waited_for_do_not_start_the_wait_again():
    fake = FakeTime()
    rl = limiter(fake)
    rl.quota("f", limit=10, remaining=2, window=2000.0, reset_in=1.0, reserve=2)
    rl.before("f")  # waits for the reset
    rl.quota("f", limit=10, remaining=1, window=2000.0, reset_in=0.0, reserve=2)  # sent before the pause, late
    assert rl.before("f") == 0 and rl.pauses == 1


def test_a_hold_pauses_every_other_thread_but_not_the_one_whose_retry_waits_for_it():
    fake = FakeTime()
    rl = limiter(fake)
    rl.hold("f", 2.0)
    assert rl.before("f") == 0  # this thread was told; its retry sleeps the Retry-After itself
    waited = []
    other = threading.Thread(target=lambda: waited.append(rl.before("f")))
    other.start()
    other.join()
    assert waited == [pytest.approx(2.0)] and rl.holds == 1


def test_a_pause_is_waited_out_once_even_by_a_sleep_that_returns_at_once():
    rl = RateLimiter("Vendor", sleep=lambda seconds: None)
    rl.hold("f", 30.0)
    waited = []
    other = threading.Thread(target=lambda: waited.append(rl.before("f")))
    other.start()
    other.join(timeout=5)
    assert not other.is_alive() and waited == [pytest.approx(30.0, abs=0.1)]


def test_the_local_clock_stands_for_the_servers_when_they_agree_to_a_second():
    assert server_clock("Wed, 02 Dec 2026 04:00:00 GMT", now=1796184000.7) == 1796184000.7
    assert server_clock("Wed, 02 Dec 2026 04:00:00 GMT", now=1796184600.0) == 1796184000.0  # 10 min off


def test_a_failed_item_is_named_and_keeps_its_class_and_status():
    def fetch(n):
        if n == 5:
            raise AuthError("GET /things failed with HTTP 403", status=403)
        return n

    results = []
    with pytest.raises(AuthError) as failure:
        for value in ordered_map(fetch, range(10), 3, failed=naming(lambda n: f"things of parent {n}")):
            results.append(value)
    assert str(failure.value) == "things of parent 5: GET /things failed with HTTP 403"
    assert failure.value.status == 403
    assert results == [0, 1, 2, 3, 4]  # every item before it, none after


def test_an_error_that_names_its_item_already_is_raised_as_it_is():
    error = CollectionError("things of parent 1: gone")

    def fetch(n):
        raise error

    with pytest.raises(CollectionError) as failure:
        list(ordered_map(fetch, [1], 2, failed=naming(lambda n: f"things of parent {n}")))
    assert failure.value is error
