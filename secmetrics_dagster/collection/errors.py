"""Errors a collection raises, each written for the person who has to act on it."""


class CollectionError(Exception):
    """A pull from a vendor API failed; the message names the endpoint, the cause and what to do.

    `status` is the HTTP status of the answer that ended the pull, when there was one, so callers branch on it
    instead of parsing the message.
    """

    def __init__(self, message: str = "", *, status: "int | None" = None):
        super().__init__(message)
        self.status = status


def http_status(exc: BaseException) -> "int | None":
    """The HTTP status of the answer an error comes from (None: no answer, e.g. a timeout, or not an HTTP error)."""
    return getattr(exc, "status", None)


class AuthError(CollectionError):
    """The vendor refused the credentials (401) or their permissions (403)."""


class IncompleteCollectionError(CollectionError):
    """The pull ended with fewer or more records than the API reported, so it must not replace good data."""


class ConfigError(ValueError):
    """Configuration (an environment variable, a path template) is unusable."""


class InvalidIdentifierError(ConfigError):
    """A tag or tenancy would be unsafe in a path, an S3 key or SQL."""


class MissingCredentialsError(ConfigError):
    """A source was asked to run without the environment variables it needs."""

    def __init__(self, source: str, missing: list[str]):
        self.source = source
        self.missing = list(missing)
        super().__init__(
            f"{source}: not configured, missing environment variable(s) {', '.join(self.missing)}. "
            f"Set them (see README, 'Configuration') or leave {source} out of the selection."
        )
