"""boto3 sessions whose botocore data (service models, endpoint rules, partitions) is parsed once per process.

Each new boto3 session gets a botocore loader of its own, with an empty cache, so its first client reads and
parses the service's JSON again: about 90 ms of CPU per S3 client, and the S3 store, the restore and the AWS
source (one client per region and service) each open their own. Here every session still resolves its own
credentials, region and profile exactly as `boto3.Session(...)` does; only the loader, which reads nothing but
those data files, is shared: one per data path (AWS_DATA_PATH or the profile's data_path). botocore already hands
the same loaded dicts to every client of one session; this extends that to sessions.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

import boto3
import botocore.loaders
import botocore.session

_loaders: dict[str, botocore.loaders.Loader] = {}
_loaders_lock = threading.Lock()


class _SearchPaths(list):
    """A loader's search paths (botocore keeps the list it is given). boto3 appends its own data directory to
    the loader of every session it makes; on a shared loader, once is enough."""

    def append(self, path: Any) -> None:
        if path not in self:
            super().append(path)


def shared_loader(data_path: Optional[str]) -> botocore.loaders.Loader:
    """The process's loader for this data path, made as botocore.loaders.create_loader makes one."""
    key = data_path or ""
    with _loaders_lock:
        if key not in _loaders:
            extra = [os.path.expanduser(os.path.expandvars(p)) for p in key.split(os.pathsep) if p]
            _loaders[key] = botocore.loaders.Loader(extra_search_paths=_SearchPaths(extra))
        return _loaders[key]


def boto3_session(profile_name: Optional[str] = None, **kwargs: Any) -> boto3.Session:
    """`boto3.Session(profile_name=..., **kwargs)` on a botocore session that uses the shared loader. Raises
    botocore's ProfileNotFound, as boto3 does, for a profile that does not exist."""
    core = botocore.session.Session(profile=profile_name)
    core.register_component("data_loader", shared_loader(core.get_config_variable("data_path")))
    return boto3.Session(botocore_session=core, **kwargs)
