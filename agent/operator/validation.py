"""What the validating webhook checks: the CRD's rules, then the operator's policy.

The CRD's rules (:mod:`agent.binding.schema`) are checked first, by the same code the
key agent runs, so a cluster whose CRD schema is missing or stale gets the same verdict.
Then what only the operator knows: which environments exist here and which namespaces
may bind each, which KV mount and prefix bindings may read, and where the consumer
pods may send their tokens (:class:`agent.binding.model.VaultPolicy`). Without this, a
binding in any namespace could point its consumers (and their audit trail) at any path
its role can read, for instance another team's environment, or hand their tokens to a
server of its choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aiohttp.web
import kopf

from agent.aws.refs import AwsSecretRef
from agent.binding.model import BindingSpec, InvalidBindingError
from agent.operator.config import OperatorConfig

__all__ = ["MAX_REVIEW_BYTES", "WebhookServer", "validate_binding"]

# An object the API server stores is at most ~1.5 MiB (etcd's request limit), and an
# AdmissionReview of an UPDATE carries it twice: aiohttp's 1 MiB default would answer a
# large but legal binding (or pod) with a bare 413 instead of a verdict saying what is wrong.
MAX_REVIEW_BYTES = 4 * 1024 * 1024


class WebhookServer(kopf.WebhookServer):
    """kopf's webhook server, reading AdmissionReviews up to :data:`MAX_REVIEW_BYTES`."""

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        request._client_max_size = MAX_REVIEW_BYTES  # aiohttp's per-request body limit.
        return await kopf.WebhookServer._serve(fn, request)


_ACCOUNT_IN_ARN = re.compile(r"^arn:[^:]+:[^:]+:[^:]*:(\d{12}):")
_NAME_IN_SECRET_ARN = re.compile(r"^arn:[^:]+:secretsmanager:[^:]+:\d{12}:secret:(.+)$")


def validate_binding(body: Mapping[str, Any], config: OperatorConfig) -> BindingSpec:
    """The binding's spec if this operator may serve it; else :class:`InvalidBindingError`."""
    spec = BindingSpec.from_body(body, config.vault.policy)
    metadata = body.get("metadata") or {}
    name, namespace = metadata.get("name", "?"), str(metadata.get("namespace") or "")
    if spec.environment not in config.environments:
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.environment {spec.environment!r} is not one of "
            f"the environments this operator serves ({', '.join(config.environments)}); "
            "fix it, or add it to the chart's environments value"
        )
    if not config.namespace_may_bind(namespace, spec.environment):
        allowed = ", ".join(config.environment_namespaces[spec.environment])
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.environment {spec.environment!r} may not be "
            f"bound from namespace {namespace!r}: only from {allowed} (the chart's "
            "environmentNamespaces); use this namespace's own environment"
        )
    if isinstance(spec.ref, AwsSecretRef):
        _check_aws(name, spec, spec.ref, config)
        return spec
    if spec.ref.mount != config.kv_mount:
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.kv.mount {spec.ref.mount!r} is not allowed: use "
            f"{config.kv_mount!r}, the KV mount this operator serves (or leave it empty)"
        )
    prefix = f"{config.kv_path_prefix}/{spec.environment}"
    if spec.ref.path != prefix and not spec.ref.path.startswith(prefix + "/"):
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.kv.path {_path_written(body)!r} resolves to "
            f"{spec.ref.path!r}, outside "
            f"{prefix!r}: a binding for {spec.environment!r} may only read under "
            f"{config.kv_mount}/{prefix}"
        )
    return spec


def _check_aws(name: str, spec: BindingSpec, ref: AwsSecretRef, config: OperatorConfig) -> None:
    """An AWS binding stays inside the accounts and the secret prefix the platform allows."""
    aws = config.aws
    where = f"CaptchaKeyBinding {name!r}"
    if not aws.accounts:
        raise InvalidBindingError(
            f"{where}: spec.source is aws, but this operator serves no AWS account: add the "
            "account id to the chart's aws.accounts value, or use a Vault binding"
        )
    audience = spec.aws.audience if spec.aws else ""
    if audience not in aws.audiences:
        raise InvalidBindingError(
            f"{where}: spec.aws.audience {audience!r} is not an allowed token audience for AWS "
            f"({', '.join(aws.audiences)}): the pods' tokens are minted for it"
        )
    role_arn = spec.aws.role_arn if spec.aws else ""
    for field_name, arn in (("spec.aws.roleArn", role_arn), ("spec.aws.secretId", ref.secret_id)):
        match = _ACCOUNT_IN_ARN.match(arn)
        if match and match.group(1) not in aws.accounts:
            raise InvalidBindingError(
                f"{where}: {field_name} {arn!r} is in AWS account {match.group(1)}, which is "
                f"not allowed: use one of the accounts {', '.join(aws.accounts)} (the chart's "
                "aws.accounts)"
            )
    secret_name = ref.secret_id
    arn_name = _NAME_IN_SECRET_ARN.match(secret_name)
    if arn_name:  # an ARN's name ends in "-" and six random characters.
        secret_name = arn_name.group(1).rsplit("-", 1)[0]
    prefix = f"{aws.secret_prefix}/{spec.environment}"
    if secret_name != prefix and not secret_name.startswith(prefix + "/"):
        raise InvalidBindingError(
            f"{where}: spec.aws.secretId {ref.secret_id!r} is outside {prefix!r}: a binding "
            f"for {spec.environment!r} may only read secrets named {prefix} or {prefix}/..."
        )


def _path_written(body: Mapping[str, Any]) -> str:
    kv = (body.get("spec") or {}).get("kv") or {}
    return str(kv.get("path") or "captchaai/{environment}")
