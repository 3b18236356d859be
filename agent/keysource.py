"""The one protocol the refresher reads keys through, whatever stores them.

Vault KV v2 (:class:`agent.vault.VaultClient`) and AWS Secrets Manager
(:class:`agent.aws.secrets.SecretsManagerSource`) both answer the same two questions,
which is all the refresh loop needs: *which version is current* (metadata only, no
key on the wire) and *give me the key of this version*. Versions are :data:`Version`
values: numbers from Vault, opaque ids from AWS (see :mod:`agent.versions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any, Protocol

from agent.versions import Version

__all__ = ["FetchedKey", "KeySource", "SourceMetadata", "SourceRef"]


class SourceRef(Protocol):
    """Where a key lives in one backend, and the version pinned (``None``: follow)."""

    @property
    def version(self) -> Version | None: ...

    @property
    def metadata_path(self) -> str:
        """What the metadata read is called, for messages."""

    @property
    def source(self) -> str:
        """Where the key comes from, without the pin: written beside the key file."""


class FetchedKey(Protocol):
    """A key and its version; implementations keep the value out of ``repr``."""

    @property
    def value(self) -> str: ...

    @property
    def version(self) -> Version: ...

    @property
    def ref(self) -> SourceRef: ...


class SourceMetadata(Protocol):
    """The cheap answer: the current version and the versions that still exist."""

    @property
    def current_version(self) -> Version: ...

    @property
    def live_versions(self) -> Set[Any]: ...

    @property
    def version_states(self) -> Mapping[Any, str]: ...


class KeySource(Protocol):
    """A backend the refresher reads through; its errors derive from ``VaultError``."""

    def read_key(self, ref: Any) -> FetchedKey: ...

    def metadata(self, ref: Any) -> SourceMetadata: ...
