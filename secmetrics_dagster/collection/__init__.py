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
from .http import HttpSession, HttpSettings, SameOriginSession, require_same_origin
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
    "SameOriginSession",
    "Snapshot",
    "Spool",
    "expand_path",
    "require_same_origin",
    "validate_tag",
    "validate_tenancy",
]
