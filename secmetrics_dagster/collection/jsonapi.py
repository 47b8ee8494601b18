"""JSON:API listings (https://jsonapi.org/format/#fetching-pagination): each page's records in a top-level `data`
list, the next page at `links.next`, no next link on the last page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

from .errors import CollectionError
from .http import HttpResponse, HttpSession


def next_link(response: HttpResponse, prefix: str = "") -> Optional[str]:
    """`links.next`, or None at the end. `prefix` goes in front of a relative link that lacks it (Snyk's links omit
    the /rest its API is served under)."""
    body = response.json()
    if not isinstance(body, dict):
        return None  # pages() fails the pull on it
    links = body.get("links") or {}
    nxt = links.get("next")
    # A listing that ends on a page boundary may end with an empty page whose `next` is its own `self`
    # (Snyk: snyk-labs/pysnyk#212, fixed the same way in #213): that is the end, not a loop.
    if not nxt or body.get("data") == [] or nxt == links.get("self"):
        return None
    if not prefix or nxt.startswith(("http://", "https://", prefix + "/")):
        return nxt
    return prefix + (nxt if nxt.startswith("/") else "/" + nxt)


def _records(response: HttpResponse) -> int:
    body = response.json()
    return len(body.get("data") or []) if isinstance(body, dict) else 0


def pages(http: HttpSession, path: str, query: Any, page_size: int, prefix: str = "") -> Iterator[list[dict]]:
    """Each page's `data` list, by `links.next` (HttpSession.iter_pages: a page served twice is dropped, a link that
    keeps coming back stops the pull). `page_size` is the page size `query` asks for: a shorter page that still
    links to a next one is asked for again, then counted (http_short_pages). An answer without a `data` list
    fails the pull."""
    answers = http.iter_pages(path, query, lambda r: next_link(r, prefix), page_size=page_size, items=_records)
    for response in answers:
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise CollectionError(f"{http.vendor}: {path} answered without a `data` list")
        yield body["data"]
