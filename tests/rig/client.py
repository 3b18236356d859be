"""Talking to the rig's API over HTTP, whichever process serves it.

Tests usually serve the rig from a thread of their own process
(:class:`~tests.rig.kube.RealisticKubernetes`); the bench serves it from a process of
its own (:mod:`tests.rig.serve`), so that the rig's CPU is not the product's. Both
answer the same plain Kubernetes HTTP, so the helpers that build a scenario (a
:class:`~tests.rig.scenario.Workload`, OpenBao's Kubernetes auth, the operator's
identity) take an :class:`ApiServer`: either of them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp

__all__ = ["ApiCalls", "ApiServer", "api_call", "write_kubeconfig"]


class ApiServer(Protocol):
    """What a scenario needs of the rig: its URL, its identities, and plain HTTP calls."""

    @property
    def api_url(self) -> str: ...

    @property
    def admin_token(self) -> str: ...

    @property
    def ca_pem(self) -> str: ...

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audience: str | Sequence[str] = "vault",
        uid: str | None = None,
        expires_in: float = 3600,
        pod: str | None = None,
    ) -> str: ...

    def kubeconfig(
        self, path: Path, *, token: str | None = None, namespace: str = "default"
    ) -> Path: ...

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> Any: ...


async def api_call(
    api_url: str,
    token: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
) -> Any:
    """One API call over HTTP from the caller's loop; raises on an error status."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    data = None if body is None else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, api_url + path, data=data, headers=headers) as response,
    ):
        text = await response.text()
        if response.status >= 400:
            with contextlib.suppress(ValueError, AttributeError):
                text = json.loads(text).get("message", text)
            raise aiohttp.ClientResponseError(
                response.request_info, (), status=response.status, message=text
            )
        return json.loads(text)


def write_kubeconfig(path: Path, api_url: str, token: str, namespace: str = "default") -> Path:
    """Write a kubeconfig for the rig at ``api_url`` (JSON, which is YAML)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rig", "cluster": {"server": api_url}}],
        "users": [{"name": "rig", "user": {"token": token}}],
        "contexts": [
            {
                "name": "rig",
                "context": {"cluster": "rig", "user": "rig", "namespace": namespace},
            }
        ],
        "current-context": "rig",
    }
    path.write_text(json.dumps(config, indent=2))
    return path


class _Addressed(Protocol):
    @property
    def api_url(self) -> str: ...

    @property
    def admin_token(self) -> str: ...


class ApiCalls:
    """:meth:`call` and :meth:`kubeconfig` for a class that knows the URL and admin token."""

    __slots__ = ()

    def kubeconfig(
        self: _Addressed, path: Path, *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for the rig (JSON, which is YAML); the admin token by default."""
        return write_kubeconfig(path, self.api_url, token or self.admin_token, namespace)

    async def call(
        self: _Addressed,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call over HTTP from the caller's loop; raises on an error status."""
        token = token or self.admin_token
        return await api_call(self.api_url, token, method, path, body, content_type=content_type)
