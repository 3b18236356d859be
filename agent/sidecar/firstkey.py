"""The injected agent's first key, on disk before kopf and aiohttp are even imported.

Why: the injected agent holds the application back until its key is on disk (the
sidecar's startup probe is ``/readyz``), so the agent's start-up is every consumer
pod's. Importing kopf and aiohttp takes about 150 ms here (aiohttp alone builds two SSL
contexts from the system's CA bundle at import), and the first write needs neither:
one read of the binding, the binding's own checks, a Vault login and one KV read. So
:func:`run_injected_agent` does exactly that first, and loads the watch afterwards:

1. :func:`read_binding`: one GET of ``captchakeybindings/NAME`` with the credentials
   kopf's own logins use (the pod's service account, else a kubeconfig), over the
   standard library's HTTP client. It reads; it never writes.
2. The binding goes to :meth:`BindingAgent.on_event` as kopf's first event would,
   after the very checks that event would get (:meth:`BindingSpec.from_body`: the
   schema, and the platform's :class:`~agent.binding.policy.VaultPolicy` on the Vault
   address and token audience). There is no shortcut past them.
3. The key agent's first refresh (login, read, atomic write through
   :mod:`agent.keyfile`) is awaited, for :data:`FIRST_REFRESH_WAIT` at most.
4. Only then :mod:`agent.sidecar.watch` (kopf, the health server) is imported and
   started. kopf's first listing delivers the binding again: the same spec and version
   change nothing, and anything newer is applied as any later event is.

What this path does not handle it leaves alone, silently: credentials it does not
understand, an API answer other than 200, a binding the checks refuse, a key source
other than Vault (an AWS binding loads the AWS SDK, which dwarfs kopf anyway). kopf's
path then meets the same binding and reports it exactly as it always has, once. A first
refresh that fails (Vault away, a policy) is the key agent's own failure, reported and
retried by it as at any other time, and ``/readyz`` stays 503; the watch starts
regardless.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import logging
import os
import signal
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from agent.binding.model import GROUP, PLURAL, VERSION, BindingSpec, InvalidBindingError
from agent.contract import pod
from agent.runtime.startup import aiohttp_pure_python, collection_paused, no_ca_bundle_preloaded
from agent.sidecar.bindingagent import BindingAgent
from agent.vault import VaultError

__all__ = ["FIRST_REFRESH_WAIT", "ApiAccess", "api_access", "read_binding", "run_injected_agent"]

_log = logging.getLogger(__name__)

# How long the watch waits for the first refresh: a healthy Vault answers in
# milliseconds; one that hangs must not keep the watch (and /healthz) away for long.
FIRST_REFRESH_WAIT = 3.0
_READ_TIMEOUT = 5.0  # the one GET of the binding; kopf's own requests then take over.

# Everything that makes the fast path step aside for kopf's: never an error of its own.
_UNUSABLE = (OSError, ValueError, LookupError, TypeError, http.client.HTTPException)


@dataclass(frozen=True)
class ApiAccess:
    """Where the API server is and the bearer token to show it (never in a repr)."""

    server: str
    token: str = field(repr=False)
    ca_file: str | None = None
    ca_data: str | None = None  # PEM, as a kubeconfig's certificate-authority-data decodes.
    insecure: bool = False

    def tls(self) -> ssl.SSLContext:
        """The API server's CA alone when one is named (not the system's whole bundle)."""
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def api_access(environ: Mapping[str, str] = os.environ) -> ApiAccess | None:
    """The credentials kopf's logins would pick: the service account's, else a kubeconfig's.

    ``None`` for anything else (client certificates, exec plugins, several kubeconfig
    files merged): kopf reads those itself.
    """
    return _service_account(environ) or _kubeconfig(environ)


def _service_account(environ: Mapping[str, str]) -> ApiAccess | None:
    directory = Path(pod.KUBE_API_DIR)
    try:
        token = (directory / "token").read_text().strip()
    except OSError:
        return None
    host = environ.get("KUBERNETES_SERVICE_HOST")
    # The service's address from the environment, as client libraries do: no DNS lookup.
    server = "https://kubernetes.default.svc"
    if host:
        server = f"https://{f'[{host}]' if ':' in host else host}:"
        server += environ.get("KUBERNETES_SERVICE_PORT", "443")
    ca = directory / "ca.crt"
    return ApiAccess(server, token, ca_file=str(ca) if ca.is_file() else None) if token else None


def _kubeconfig(environ: Mapping[str, str]) -> ApiAccess | None:
    path = environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    if os.pathsep in path:
        return None
    try:
        config = _load(Path(path))
        context = _named(config, "contexts", config["current-context"])
        cluster = _named(config, "clusters", context["cluster"])
        user = _named(config, "users", context["user"])
    except _UNUSABLE:
        return None
    if set(user) != {"token"}:  # certificates, exec plugins, auth providers: kopf's part.
        return None
    authority = cluster.get("certificate-authority-data")
    return ApiAccess(
        server=str(cluster["server"]),
        token=str(user["token"]),
        ca_file=cluster.get("certificate-authority"),
        ca_data=base64.b64decode(authority).decode("ascii") if authority else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def _load(path: Path) -> Mapping[str, Any]:
    """A kubeconfig: JSON (which is YAML, and needs no parser to import) or YAML."""
    text = path.read_text()
    try:
        loaded = json.loads(text)
    except ValueError:
        import yaml  # only for a YAML kubeconfig: a pod uses its service account.

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from None
    if not isinstance(loaded, Mapping):
        raise TypeError("a kubeconfig is a mapping")
    return loaded


def _named(config: Mapping[str, Any], kind: str, name: object) -> Mapping[str, Any]:
    """The ``kind[].<singular>`` entry called ``name`` (``contexts[].context``, ...)."""
    entry = next((item for item in config[kind] if item["name"] == name), None)
    if entry is None:
        raise KeyError(f"no {kind[:-1]} {name!r}")
    inner: Mapping[str, Any] = entry[kind[:-1]]
    return inner


def read_binding(
    name: str, namespace: str, access: ApiAccess | None = None
) -> Mapping[str, Any] | None:
    """The binding as the API server has it now, or ``None`` if that cannot be had simply."""
    access = access or api_access()
    if access is None:
        return None
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"
    try:
        status, body = _get(access, path)
        if status != 200:
            _log.debug("reading the binding answered %d: left to the watch", status)
            return None
        loaded = json.loads(body)
    except _UNUSABLE as exc:
        _log.debug("could not read the binding (%s): left to the watch", type(exc).__name__)
        return None
    return loaded if isinstance(loaded, Mapping) else None


def _get(access: ApiAccess, path: str) -> tuple[int, bytes]:
    url = urlsplit(access.server)
    host, port = url.hostname or "", url.port
    connection: http.client.HTTPConnection
    if url.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, port, context=access.tls(), timeout=_READ_TIMEOUT
        )
    elif url.scheme == "http":
        connection = http.client.HTTPConnection(host, port, timeout=_READ_TIMEOUT)
    else:
        raise ValueError(f"unknown scheme {url.scheme!r}")
    headers = {"Authorization": f"Bearer {access.token}", "Accept": "application/json"}
    try:
        connection.request("GET", url.path.rstrip("/") + path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def run_injected_agent(
    binding: BindingAgent, namespace: str, *, health: tuple[str, int] | None = None
) -> None:
    """The injected agent's whole life: the first key as early as it can be, then the watch."""
    body = read_binding(binding.name, namespace)
    asyncio.run(_run(binding, namespace, health, body))


async def _run(
    binding: BindingAgent,
    namespace: str,
    health: tuple[str, int] | None,
    body: Mapping[str, Any] | None,
) -> None:
    # The key can be on disk before kopf takes the signals over: until it does, SIGTERM
    # or SIGINT cancels this task, which stops everything as gracefully as kopf would.
    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    assert main is not None
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, main.cancel)
    try:
        await _first_key(binding, body)
        with collection_paused(), no_ca_bundle_preloaded(), aiohttp_pure_python():
            from agent.sidecar.watch import run_binding_agent  # kopf and aiohttp: only now.
        await run_binding_agent(binding, namespace, health=health)
    except asyncio.CancelledError:
        await binding.close()  # a signal before kopf's handlers: a stop, not a failure.


async def _first_key(binding: BindingAgent, body: Mapping[str, Any] | None) -> None:
    try:
        if body is not None and _followable(body, binding):
            binding.on_event(None, body)
            await _first_refresh(binding)
    except Exception:  # kopf's first event meets the same and reports it, as it always has.
        _log.debug("the first key is left to the watch", exc_info=True)


def _followable(body: Mapping[str, Any], binding: BindingAgent) -> bool:
    """Whether the fast path takes this binding: valid, allowed, and a Vault one."""
    try:
        spec = BindingSpec.from_body(body, binding.defaults.policy)
    except (InvalidBindingError, VaultError):
        return False  # the watch's first event reports it, as it always has.
    return spec.vault is not None


async def _first_refresh(binding: BindingAgent) -> None:
    agent = binding.agent
    if agent is not None:
        # asyncio.timeout, not wait_for: a signal's cancellation arriving just as the
        # refresh ends must not be lost (wait_for would return the result instead).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_REFRESH_WAIT):
                await agent.attempted.wait()
