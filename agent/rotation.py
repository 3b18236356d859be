"""``captchakey rotate``: the guide's rotation workflow as one command that knows when it is done.

1. Optionally store a new key in Vault (read from stdin, never from argv: argv shows in
   ``ps`` and shell history), with the engineer's own Vault identity.
2. Ask the operator for an immediate rotation by setting ``spec.rotation.requestedAt``
   (idempotent: the operator acts once per distinct value, and records it in
   ``status.lastRotationRequest``).
3. Follow the binding's status until every live consumer holds the new version and the
   previous one is listed as safe to revoke; print exactly which version that is.
   Exit non-zero after ``timeout`` with the stragglers named.

It finds the cluster as kubectl does (``--kubeconfig``, else ``$KUBECONFIG``, else
``~/.kube/config``; ``--context``; the context's namespace when ``-n`` is absent; the
pod's service account when run in a pod without a kubeconfig) and Vault's token as the
``vault`` and ``bao`` CLIs do (``VAULT_TOKEN`` or ``BAO_TOKEN``, else ``~/.vault-token``).
Vault's address, CA and namespace come from the ``vault`` CLI's variables, else the ``bao``
CLI's (``VAULT_ADDR``, else ``BAO_ADDR``, and so on). Every ordinary mistake or outage (no
kubeconfig, API unreachable, silent past the request timeout or refusing, binding
missing, Vault refusing) is a :class:`RotateError` with one line that says what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from agent import versions
from agent.binding.model import BindingSpec
from agent.contract import bindingstatus
from agent.contract.bindingstatus import BindingStatus, RolloutStatus
from agent.kube import KubeApi
from agent.vault import SecretRef, VaultClient

__all__ = [
    "Cluster",
    "RotateError",
    "RotationResult",
    "api_errors",
    "connect",
    "find_binding",
    "rotate",
    "vault_token",
]

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RotateError(Exception):
    """An ordinary mistake or outage, said in one line (no traceback for these)."""


@dataclass(frozen=True)
class Cluster:
    """The API as kubectl would reach it, and the namespace kubectl would use."""

    api: KubeApi
    host: str
    namespace: str
    source: str  # where the credentials came from, for messages.
    request_timeout: float  # seconds each API request may take.


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    request_timeout: float,
) -> Cluster:
    """Reach the cluster as kubectl does; a missing or bad kubeconfig is a RotateError.

    Each API request is tried once and given up after ``request_timeout`` seconds, so a
    dead or hung API server is an error in bounded time, never a wait without end.
    """
    default_file = Path.home() / ".kube" / "config"
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and not default_file.exists():
        if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
            return _in_cluster(request_timeout)
        raise RotateError(
            f"no kubeconfig: KUBECONFIG is unset and {default_file} does not exist; "
            "pass --kubeconfig FILE (and --context NAME) as for kubectl"
        )
    source = kubeconfig or os.environ.get("KUBECONFIG") or str(default_file)
    try:
        return _from_kubeconfig(kubeconfig, context, source, request_timeout)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise RotateError(f"cannot use the kubeconfig {source}: {_one_line(exc)}") from None


def _from_kubeconfig(
    kubeconfig: str | None, context: str | None, source: str, request_timeout: float
) -> Cluster:
    """The context asked for (else the current one) of the kubeconfig, and its namespace."""
    contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=kubeconfig
    )
    chosen = context or (active or {}).get("name")
    found = next((c for c in contexts if c["name"] == chosen), None)
    if found is None:
        names = ", ".join(c["name"] for c in contexts) or "none"
        raise RotateError(
            f"no context {chosen!r} in the kubeconfig {source} (it has: {names}); "
            "pick one with --context"
        )
    configuration = _configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context=chosen, client_configuration=configuration
    )
    namespace = found["context"].get("namespace") or "default"
    return _cluster(configuration, namespace, f"context {chosen!r}", request_timeout)


def _in_cluster(request_timeout: float) -> Cluster:
    configuration = _configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise RotateError(f"cannot use this pod's service account: {_one_line(exc)}") from None
    return _cluster(configuration, namespace, "the pod's service account", request_timeout)


def _configuration() -> kubernetes.client.Configuration:
    """The client's settings, before credentials: no silent retries, so timeouts add up to one."""
    configuration = kubernetes.client.Configuration()
    configuration.retries = 0
    return configuration


def _cluster(
    configuration: kubernetes.client.Configuration,
    namespace: str,
    source: str,
    request_timeout: float,
) -> Cluster:
    api = KubeApi(kubernetes.client.ApiClient(configuration), request_timeout=request_timeout)
    return Cluster(api, str(configuration.host), namespace, source, request_timeout)


def vault_token(home: Path | None = None) -> str | None:
    """Vault's token as the vault and bao CLIs find it: the environment, else the helper file."""
    for variable in ("VAULT_TOKEN", "BAO_TOKEN"):
        if os.environ.get(variable):
            return os.environ[variable]
    with contextlib.suppress(OSError):
        return (home or Path.home()).joinpath(".vault-token").read_text().strip() or None
    return None


_API_HINTS = {
    401: "; log in again (your credentials were refused)",
    403: "; ask for get/patch on captchakeybindings in that namespace",
}


@contextlib.contextmanager
def api_errors(cluster: Cluster) -> Iterator[None]:
    """Turn what the API client raises into one line that says what went wrong and where."""
    try:
        yield
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        detail = _one_line(reason)
        if _timed_out_waiting(reason):
            detail = f"no answer within {cluster.request_timeout:g} s (--request-timeout)"
        raise RotateError(
            f"cannot reach the Kubernetes API at {cluster.host} ({cluster.source}): {detail}"
        ) from None
    except ApiException as exc:
        raise RotateError(
            f"the Kubernetes API at {cluster.host} answered {exc.status} {exc.reason}: "
            f"{_api_message(exc)}{_API_HINTS.get(exc.status or 0, '')}"
        ) from None


def _timed_out_waiting(reason: object) -> bool:
    """A timeout, not a refused connection (which urllib3 counts among its timeouts)."""
    timeout = isinstance(reason, urllib3.exceptions.TimeoutError)
    return timeout and not isinstance(reason, urllib3.exceptions.NewConnectionError)


def _api_message(exc: ApiException) -> str:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(exc.body or "")["message"])
    return _one_line(exc.body or "")


def _one_line(value: object) -> str:
    """The last, most specific part of a nested error message, on one line."""
    text = " ".join(str(value).split())
    for noise in (">: ", "Failed to establish a new connection: "):  # urllib3's wrapping.
        text = text.split(noise, 1)[-1]
    return text


@dataclass(frozen=True)
class RotationResult:
    """How a rotation ended: the version now in use and what may be revoked."""

    ok: bool
    version: versions.Version | None
    revocable: list[versions.Version]
    stragglers: list[str]
    message: str


async def find_binding(
    kube: KubeApi, namespace: str, name: str | None, environment: str | None
) -> dict[str, Any]:
    """The binding by name, or the only one for ``environment`` in the namespace."""
    if name:
        binding = await kube.get_binding(namespace, name)
        if binding is None:
            raise LookupError(f"no CaptchaKeyBinding {name!r} in namespace {namespace!r}")
        return binding
    bindings = await kube.list_bindings(namespace)
    matches = [b for b in bindings if (b.get("spec") or {}).get("environment") == environment]
    if len(matches) != 1:
        names = ", ".join(b["metadata"]["name"] for b in matches) or "none"
        raise LookupError(
            f"{len(matches)} CaptchaKeyBindings for environment {environment!r} in namespace "
            f"{namespace!r} ({names}): name one with --binding"
        )
    return matches[0]


async def rotate(
    kube: KubeApi,
    binding: Mapping[str, Any],
    *,
    new_key: str | None = None,
    vault: VaultClient | None = None,
    wait_seconds: float = 300.0,
    poll: float = 0.5,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RotationResult:
    """Store ``new_key`` (if given), request a rotation, and follow it until it is done."""
    out = out or sys.stdout  # looked up now: whatever stdout is when the rotation runs.
    namespace, name = binding["metadata"]["namespace"], binding["metadata"]["name"]
    spec = BindingSpec.from_body(binding)
    before = bindingstatus.parse(binding.get("status")).current_version
    target = await _store(spec, name, new_key, vault, out) if new_key is not None else None
    request = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    await kube.patch_binding(namespace, name, {"spec": {"rotation": {"requestedAt": request}}})
    print(f"rotation requested on {namespace}/{name} (was version {before})", file=out)
    wanted = _Wanted(request, target, before)
    progress = _Progress(out)
    deadline = clock() + wait_seconds
    status = BindingStatus()
    while clock() < deadline:
        current = await kube.get_binding(namespace, name)
        status = bindingstatus.parse((current or {}).get("status"))
        result = wanted.settled(status)
        progress.show(status)
        if result is not None:
            progress.done()
            print(result.message, file=out)
            return result
        await asyncio.sleep(poll)
    progress.done()
    result = _timed_out(status, wait_seconds)
    print(result.message, file=out)
    return result


async def _store(
    spec: BindingSpec, name: str, new_key: str, vault: VaultClient | None, out: TextIO
) -> int:
    """Store the new key in Vault with the engineer's identity; its new version."""
    if vault is None:
        raise ValueError("a Vault client is needed to store the new key")
    if not isinstance(spec.ref, SecretRef):
        raise LookupError(
            f"CaptchaKeyBinding {name!r} reads AWS Secrets Manager: store the new key with "
            "your own identity (aws secretsmanager put-secret-value --secret-id "
            f"{spec.ref.secret_id} --secret-string file:///dev/stdin), then run "
            "captchakey rotate without --new-key-stdin"
        )
    # The agents' own key rules (agent.keyrules), checked before anything is stored.
    target = await asyncio.to_thread(vault.write_key, spec.ref, new_key, spec.key_rules)
    print(f"stored a new key at {spec.ref.mount}/{spec.ref.path} as version {target}", file=out)
    return target


def _timed_out(status: BindingStatus, wait_seconds: float) -> RotationResult:
    stragglers = list(status.rollout.stragglers) if status.rollout else []
    if stragglers:
        waiting = f"stragglers: {', '.join(stragglers)}"
    else:
        waiting = (
            "the operator has not published the new version (is it running? kubectl describe ckb)"
        )
    message = f"timed out after {wait_seconds:.0f}s: {waiting}"
    return RotationResult(False, status.current_version, [], stragglers, message)


@dataclass(frozen=True)
class _Wanted:
    """What a finished rotation looks like in the binding's status."""

    request: str  # the spec.rotation.requestedAt this rotation set.
    target: int | None  # the version stored for it, if any.
    before: versions.Version | None  # the version current when it began.

    def settled(self, status: BindingStatus) -> RotationResult | None:
        """The result, once every consumer holds the new version and the old one may go."""
        version, rollout = self._published(status), status.rollout
        if version is None or rollout is None or not rollout.complete:
            return None
        revocable = [v for v in rollout.safe_to_revoke if versions.is_older(v, version)]
        held = f"all {rollout.consumers} consumers hold version {version}"
        if self.before is None or not versions.is_older(self.before, version):
            return RotationResult(True, version, revocable, [], f"{held}; nothing new to revoke")
        if self.before not in revocable:
            return None  # some consumer may still hold the replaced version.
        message = f"{held}; version {self.before} is safe to revoke in the CaptchaAI dashboard"
        return RotationResult(True, version, revocable, [], message)

    def _published(self, status: BindingStatus) -> versions.Version | None:
        """The version the operator published for this request (``None``: not yet)."""
        if status.last_rotation_request != self.request:
            return None  # the operator has not handled this request yet.
        version = status.current_version
        if version is None or self.target is None:
            return version
        return version if versions.is_current(version, self.target) else None


class _Progress:
    """A live bar in a terminal; a plain line per change otherwise (logs, CI)."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def show(self, status: BindingStatus) -> None:
        rollout = status.rollout or RolloutStatus()
        total, ready = rollout.consumers, rollout.up_to_date
        line = f"version {status.current_version}: {ready}/{total} consumers up to date"
        if self.tty:
            filled = int(20 * ready / total) if total else 20
            self.out.write(f"\r[{'#' * filled}{'.' * (20 - filled)}] {line}\x1b[K")
            self.out.flush()
        elif line != self.last:
            print(line, file=self.out)
        self.last = line

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
