"""Small thread helpers for pulls: an ordered map on a bounded pool, the per-parent fan-out built on it, and a gate
that lets one thread replace a shared credential while the others wait."""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    name: str = "pull",
    *,
    failed: Optional[Callable[[T, Exception], Exception]] = None,
) -> Iterator[R]:
    """fn over items on a pool of `workers` threads, results in input order, at most `workers + 1` in flight.

    The bound is what keeps memory flat: the caller writes each result away before more items are taken from
    `items` (a generator is read lazily). With `workers <= 1` everything runs on the calling thread. When the
    caller stops early or an item fails, items not yet started are cancelled and running ones are waited for.
    `failed(item, exc)` gives the exception to raise for an item that failed (one naming the item), else it is
    raised as it is; either way the results of the items before it have been yielded, and none after it.
    """

    def call(item: T) -> R:
        try:
            return fn(item)
        except Exception as exc:
            if failed is None:
                raise
            replacement = failed(item, exc)
            if replacement is exc:
                raise
            raise replacement from None

    if workers <= 1:
        for item in items:
            yield call(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(call, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def naming(describe: Callable[[T], str]) -> Callable[[T, Exception], Exception]:
    """For ordered_map's `failed`: the error of an item, of its own class and status, with `describe(item)` (e.g.
    "factors of user 00u1") before its message unless the message names it already, so a fan-out's failure says which
    parent it came from."""

    def failed(item: T, exc: Exception) -> Exception:
        what = describe(item)
        if what in str(exc) or len(exc.args) > 1:
            return exc
        named = copy.copy(exc)
        named.args = (f"{what}: {exc}",)
        return named

    return failed


def fan_out(
    fetch: Callable[[T], R],
    parents: Iterable[T],
    workers: int,
    *,
    name: str,
    describe: Callable[[T], str],
    first_alone: bool = True,
) -> Iterator[tuple[T, R]]:
    """(parent, fetch(parent)) for every parent, in the parents' order, `workers` at a time (ordered_map's bounds).

    A failure names its parent (`describe(parent)`, e.g. "Okta: factors of user 00u1") and ends the iteration:
    nothing after it is yielded. With `first_alone` the first parent is read before the others start, so a refused
    credential is refused once, not once per worker; a fan-out whose parents were just listed with the same
    credential may pass False, and not hold everything back a whole parent for it.
    """
    failed = naming(describe)
    parents = iter(parents)

    def pair(parent: T) -> tuple[T, R]:
        return parent, fetch(parent)

    if first_alone:
        for first in parents:
            yield from ordered_map(pair, iter([first]), 1, failed=failed)
            break
    yield from ordered_map(pair, parents, workers, name=name, failed=failed)


class ExclusiveGate:
    """Many `shared()` holders at once, or one `exclusive()` holder alone.

    An exclusive entry waits until every shared holder has left and holds new shared entries back meanwhile
    (so a steady stream of them cannot starve it); it is what lets one thread renew a token that the requests
    of the other threads carry, with none of them reading it half-replaced. Not re-entrant: a thread inside
    `shared()` must leave before it asks for `exclusive()`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting_exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting_exclusive += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()
