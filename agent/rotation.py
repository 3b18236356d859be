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
Every ordinary mistake or outage (no kubeconfig, API unreachable or refusing, binding
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


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """Reach the cluster as kubectl does; a missing or bad kubeconfig is a RotateError."""
    default_file = Path.home() / ".kube" / "config"
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and not default_file.exists():
        if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
            return _in_cluster()
        raise RotateError(
            f"no kubeconfig: KUBECONFIG is unset and {default_file} does not exist; "
            "pass --kubeconfig FILE (and --context NAME) as for kubectl"
        )
    source = kubeconfig or os.environ.get("KUBECONFIG") or str(default_file)
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        names = [c["name"] for c in contexts]
        chosen = context or (active or {}).get("name")
        if chosen not in names:
            raise RotateError(
                f"no context {chosen!r} in the kubeconfig {source} (it has: "
                f"{', '.join(names) or 'none'}); pick one with --context"
            )
        api_client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=chosen
        )
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise RotateError(f"cannot use the kubeconfig {source}: {_one_line(exc)}") from None
    namespace = next(c for c in contexts if c["name"] == chosen)["context"].get("namespace")
    host = str(api_client.configuration.host)
    return Cluster(KubeApi(api_client), host, namespace or "default", f"context {chosen!r}")


def _in_cluster() -> Cluster:
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise RotateError(f"cannot use this pod's service account: {_one_line(exc)}") from None
    api = KubeApi(kubernetes.client.ApiClient(configuration))
    return Cluster(api, str(configuration.host), namespace, "the pod's service account")


def vault_token(home: Path | None = None) -> str | None:
    """Vault's token as the vault and bao CLIs find it: the environment, else the helper file."""
    for variable in ("VAULT_TOKEN", "BAO_TOKEN"):
        if os.environ.get(variable):
            return os.environ[variable]
    with contextlib.suppress(OSError):
        return (home or Path.home()).joinpath(".vault-token").read_text().strip() or None
    return None


@contextlib.contextmanager
def api_errors(cluster: Cluster) -> Iterator[None]:
    """Turn what the API client raises into one line that says what went wrong and where."""
    try:
        yield
    except urllib3.exceptions.HTTPError as exc:
        reason = _one_line(getattr(exc, "reason", None) or exc)
        raise RotateError(
            f"cannot reach the Kubernetes API at {cluster.host} ({cluster.source}): {reason}"
        ) from None
    except ApiException as exc:
        hint = {401: "; log in again (your credentials were refused)",
                403: "; ask for get/patch on captchakeybindings in that namespace"}  # fmt: skip
        raise RotateError(
            f"the Kubernetes API at {cluster.host} answered {exc.status} {exc.reason}: "
            f"{_api_message(exc)}{hint.get(exc.status or 0, '')}"
        ) from None


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
    matches = [
        b for b in await kube.list_bindings(namespace)
        if (b.get("spec") or {}).get("environment") == environment
    ]  # fmt: skip
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
    out = out or sys.stdout  # looked up now: whatever stdout is when the rotation runs.
    namespace, name = binding["metadata"]["namespace"], binding["metadata"]["name"]
    spec = BindingSpec.from_body(binding)
    before = (binding.get("status") or {}).get("currentVersion")
    target: int | None = None
    if new_key is not None:
        if vault is None:
            raise ValueError("a Vault client is needed to store the new key")
        if not isinstance(spec.ref, SecretRef):
            raise LookupError(
                f"CaptchaKeyBinding {name!r} reads AWS Secrets Manager: store the new key with "
                f"your own identity (aws secretsmanager put-secret-value --secret-id "
                f"{spec.ref.secret_id} --secret-string file:///dev/stdin), then run "
                "captchakey rotate without --new-key-stdin"
            )
        # The agents' own key rules (agent.keyrules), checked before anything is stored.
        target = await asyncio.to_thread(vault.write_key, spec.ref, new_key, spec.key_rules)
        print(f"stored a new key at {spec.ref.mount}/{spec.ref.path} as version {target}", file=out)
    request = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    await kube.patch_binding(namespace, name, {"spec": {"rotation": {"requestedAt": request}}})
    print(f"rotation requested on {namespace}/{name} (was version {before})", file=out)
    progress = _Progress(out)
    deadline = clock() + wait_seconds
    status: Mapping[str, Any] = {}
    while clock() < deadline:
        current = await kube.get_binding(namespace, name)
        status = (current or {}).get("status") or {}
        result = _settled(status, request, target, before)
        progress.show(status)
        if result is not None:
            progress.done()
            print(result.message, file=out)
            return result
        await asyncio.sleep(poll)
    progress.done()
    stragglers = list((status.get("rollout") or {}).get("stragglers") or [])
    message = (
        f"timed out after {wait_seconds:.0f}s: "
        + (f"stragglers: {', '.join(stragglers)}" if stragglers else "the operator has not "
           "published the new version (is it running? kubectl describe ckb)")
    )  # fmt: skip
    print(message, file=out)
    return RotationResult(False, status.get("currentVersion"), [], stragglers, message)


def _settled(
    status: Mapping[str, Any], request: str, target: int | None, before: int | None
) -> RotationResult | None:
    if status.get("lastRotationRequest") != request:
        return None  # the operator has not handled this request yet.
    version = versions.parse(status.get("currentVersion"))
    if version is None or (target is not None and not versions.is_current(version, target)):
        return None
    rollout = status.get("rollout") or {}
    if rollout.get("upToDate") != rollout.get("consumers"):
        return None
    revocable = [v for v in rollout.get("safeToRevoke") or [] if versions.is_older(v, version)]
    replaced = before is not None and versions.is_older(before, version)
    if replaced and before not in revocable:
        return None
    if replaced:
        message = (
            f"all {rollout.get('consumers', 0)} consumers hold version {version}; "
            f"version {before} is safe to revoke in the CaptchaAI dashboard"
        )
    else:
        consumers = rollout.get("consumers", 0)
        message = f"all {consumers} consumers hold version {version}; nothing new to revoke"
    return RotationResult(True, version, revocable, [], message)


class _Progress:
    """A live bar in a terminal; a plain line per change otherwise (logs, CI)."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def show(self, status: Mapping[str, Any]) -> None:
        rollout = status.get("rollout") or {}
        total, ready = int(rollout.get("consumers") or 0), int(rollout.get("upToDate") or 0)
        line = f"version {status.get('currentVersion')}: {ready}/{total} consumers up to date"
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
