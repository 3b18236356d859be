"""``captchakey rotate``: the guide's rotation workflow as one command that knows when it is done.

1. Optionally store a new key in Vault (read from stdin, never from argv: argv shows in
   ``ps`` and shell history), with the engineer's own Vault identity.
2. Ask the operator for an immediate rotation by setting ``spec.rotation.requestedAt``
   (idempotent: the operator acts once per distinct value, and records it in
   ``status.lastRotationRequest``).
3. Follow the binding's status until every live consumer holds the new version and the
   previous one is listed as safe to revoke; print exactly which version that is.
   Exit non-zero after ``timeout`` with the stragglers named.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from agent import versions
from agent.binding import BindingSpec
from agent.operator.kube import KubeApi
from agent.vault import SecretRef, VaultClient

__all__ = ["RotationResult", "find_binding", "rotate"]


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
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.monotonic,
) -> RotationResult:
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
        target = await asyncio.to_thread(vault.write_key, spec.ref, new_key)
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
