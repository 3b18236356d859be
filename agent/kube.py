"""The few Kubernetes API calls made outside kopf: by the operator and the rotate client.

kopf watches and patches through its handlers; the operator also needs plain reads and
writes that no handler return can express: look up a binding during pod admission,
patch a binding's status from its keeper, keep the webhook TLS Secret, write the
caBundle. The official client does these; it is synchronous, so every call runs in a
worker thread to keep the event loop (and the admission latency) free.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from agent.binding.model import GROUP, PLURAL, VERSION

__all__ = ["KubeApi"]


class KubeApi:
    """Thin async facade over ``kubernetes.client`` for the operator's own calls."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, request_timeout: float | None = None
    ):
        # Without one, a call to an API server that accepts but never answers waits forever.
        self._request_timeout = request_timeout
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._admission = kubernetes.client.AdmissionregistrationV1Api(api_client)
        self._version = kubernetes.client.VersionApi(api_client)

    @classmethod
    def connect(
        cls,
        server: str | None = None,
        token: str | None = None,
        *,
        request_timeout: float | None = None,
    ) -> KubeApi:
        """In-cluster credentials, else the kubeconfig; or an explicit server and token.

        ``request_timeout`` (seconds) bounds each request; ``None`` waits without end.
        """
        if server is None:
            try:
                kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
            return cls(kubernetes.client.ApiClient(), request_timeout=request_timeout)
        configuration = kubernetes.client.Configuration()
        configuration.host = server
        configuration.api_key = {"authorization": f"Bearer {token}"} if token else {}
        return cls(kubernetes.client.ApiClient(configuration), request_timeout=request_timeout)

    async def _call(
        self,
        method: Callable[..., Any],
        *args: Any,
        request_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """``method`` of the official client in a worker thread, with a request timeout.

        Each try is bounded (the client retries a read that timed out, a few times): a hung
        API server holds the loop's worker threads for a bounded time, never for good.
        """
        timeout = request_timeout or self._request_timeout
        options = {"_request_timeout": timeout} if timeout else {}
        return await asyncio.to_thread(method, *args, **options, **kwargs)

    async def get_binding(
        self, namespace: str, name: str, *, request_timeout: float | None = None
    ) -> dict[str, Any] | None:
        """``None`` if it does not exist; ``request_timeout``: a tighter bound for this call.

        Pod admission has only part of the API server's webhook timeout to spend on it.
        """
        binding = (GROUP, VERSION, namespace, PLURAL, name)
        try:
            body = await self._call(
                self._custom.get_namespaced_custom_object,
                *binding,
                request_timeout=request_timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], body)

    async def list_bindings(self, namespace: str) -> list[dict[str, Any]]:
        listing = await self._call(
            self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
        )
        return list(cast(dict[str, Any], listing).get("items") or [])

    async def patch_binding(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        binding = (GROUP, VERSION, namespace, PLURAL, name)
        await self._call(self._custom.patch_namespaced_custom_object, *binding, dict(patch))

    async def patch_binding_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        binding = (GROUP, VERSION, namespace, PLURAL, name)
        body = {"status": dict(status)}
        await self._call(self._custom.patch_namespaced_custom_object_status, *binding, body)

    async def server_version(self) -> tuple[int, int]:
        info = await self._call(self._version.get_code)
        return int(info.major), int("".join(ch for ch in info.minor if ch.isdigit()) or 0)

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            secret = await self._call(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def create_secret(self, namespace: str, name: str, data: Mapping[str, bytes]) -> bool:
        """Create the Secret; ``False`` if another replica created it first."""
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace),
            type="Opaque",
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        )
        try:
            await self._call(self._core.create_namespaced_secret, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def replace_secret(
        self, namespace: str, name: str, data: Mapping[str, bytes | None]
    ) -> None:
        """Set the Secret's keys; a ``None`` value removes that key."""
        patch = {
            "data": {
                k: None if v is None else base64.b64encode(v).decode() for k, v in data.items()
            }
        }
        # A JSON merge patch: exact for a map on any API server (the client's default
        # strategic merge is Kubernetes-specific and means the same here).
        await self._call(
            self._core.patch_namespaced_secret,
            name,
            namespace,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def set_ca_bundle(self, mutating: str, validating: str, ca_pem: bytes) -> None:
        """Write the CA into every webhook of both configurations, and nothing else.

        A JSON patch (a list body makes the client send ``application/json-patch+json``)
        with a ``test`` of each webhook's name: exact on any API server, and it fails
        rather than writing into the wrong webhook if the list changed meanwhile.
        """
        bundle = base64.b64encode(ca_pem).decode()
        admission = self._admission
        configurations = [
            (
                admission.read_mutating_webhook_configuration,
                admission.patch_mutating_webhook_configuration,
                mutating,
            ),
            (
                admission.read_validating_webhook_configuration,
                admission.patch_validating_webhook_configuration,
                validating,
            ),
        ]
        for read, patch, name in configurations:
            current = await self._call(read, name)
            ops: list[dict[str, str]] = []
            for index, hook in enumerate(getattr(current, "webhooks", None) or []):
                ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook.name})
                path = f"/webhooks/{index}/clientConfig/caBundle"
                ops.append({"op": "add", "path": path, "value": bundle})
            if ops:
                await self._call(patch, name, ops)
