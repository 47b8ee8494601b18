"""Vendor-agnostic collection framework: run context, path templating, HTTP, spool and Snapshot."""

from .context import RunContext, expand_path, validate_tag, validate_tenancy
from .errors import (
    AuthError,
    CollectionError,
    ConfigError,
    IncompleteCollectionError,
    InvalidIdentifierError,
    MissingCredentialsError,
)
from .http import HttpSession, HttpSettings
from .spool import Snapshot, Spool

__all__ = [
    "AuthError",
    "CollectionError",
    "ConfigError",
    "HttpSession",
    "HttpSettings",
    "IncompleteCollectionError",
    "InvalidIdentifierError",
    "MissingCredentialsError",
    "RunContext",
    "Snapshot",
    "Spool",
    "expand_path",
    "validate_tag",
    "validate_tenancy",
]
