"""Secrets out of every message that leaves a collection: exception text, log lines, metadata.

Whatever raised (requests quoting a header value, falconpy, pyTenable, boto3, psycopg quoting a DSN), the text
crosses the collection boundary through `Redactor.text`, which replaces each configured secret, and its URL- and
JSON-escaped forms, with `***`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter values (a port, "on") would mask ordinary text and protect nothing.
MIN_SECRET_LENGTH = 4


class Redactor:
    """Replaces every form of every secret it was given."""

    def __init__(self, secrets: Iterable[Any] = ()):
        self.forms: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: Any) -> None:
        """Mask these secrets too from now on (a token obtained during the pull)."""
        forms: set[str] = set(self.forms)
        for secret in secrets:
            if not isinstance(secret, str):
                continue
            for value in {secret, secret.strip()}:
                if len(value) < MIN_SECRET_LENGTH:
                    continue
                forms.update(
                    {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1], repr(value)[1:-1]}
                )
        # Longest first, so a secret that contains another is masked whole.
        self.forms = sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def text(self, value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        for form in self.forms:
            text = text.replace(form, MASK)
        return text

    def error(self, exc: BaseException) -> str:
        """The exception's message and every cause's, redacted: what the user is shown instead of the chain."""
        parts, seen = [], set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            message = str(current) or type(current).__name__
            if message not in parts:
                parts.append(message)
            current = current.__cause__ or current.__context__
        return self.text(parts[0] if len(parts) == 1 else parts[0] + " (caused by: " + "; ".join(parts[1:]) + ")")


class RedactingLog:
    """A Dagster log (context.log) that redacts every message before it is written."""

    def __init__(self, log: Any, redactor: Redactor):
        self._log = log
        self._redactor = redactor

    def _emit(self, level: str, message: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            try:
                message = str(message) % args
            except (TypeError, ValueError):
                message = " ".join([str(message), *map(str, args)])
        getattr(self._log, level)(self._redactor.text(message), **kwargs)

    def debug(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("debug", message, *args, **kwargs)

    def info(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("info", message, *args, **kwargs)

    def warning(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("warning", message, *args, **kwargs)

    warn = warning

    def error(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", message, *args, **kwargs)

    def exception(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", message, *args, **kwargs)

    def critical(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("critical", message, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging.Logger's name, used by SDK code
        check = getattr(self._log, "isEnabledFor", None)
        return True if check is None else check(level)
