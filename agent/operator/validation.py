"""What the validating webhook checks beyond the CRD schema: the operator's policy.

The schema knows shapes; only the operator knows which environments exist here and
which KV mount and prefix bindings may read. Without this check, a binding in any
namespace could point its consumers (and their audit trail) at any path its role can
read, for instance another team's environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.aws.refs import AwsSecretRef
from agent.binding import BindingSpec, InvalidBindingError
from agent.operator.config import OperatorConfig

__all__ = ["validate_binding"]

_ACCOUNT_IN_ARN = re.compile(r"^arn:[^:]+:[^:]+:[^:]*:(\d{12}):")
_NAME_IN_SECRET_ARN = re.compile(r"^arn:[^:]+:secretsmanager:[^:]+:\d{12}:secret:(.+)$")


def validate_binding(body: Mapping[str, Any], config: OperatorConfig) -> BindingSpec:
    """The binding's spec if this operator may serve it; else :class:`InvalidBindingError`."""
    spec = BindingSpec.from_body(body)
    name = (body.get("metadata") or {}).get("name", "?")
    if spec.environment not in config.environments:
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.environment {spec.environment!r} is not one of "
            f"the environments this operator serves ({', '.join(config.environments)}); "
            "fix it, or add it to the chart's environments value"
        )
    if isinstance(spec.ref, AwsSecretRef):
        _check_aws(name, spec, spec.ref, config)
        return spec
    if spec.ref.mount != config.kv_mount:
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.kv.mount {spec.ref.mount!r} is not the allowed "
            f"KV mount {config.kv_mount!r}"
        )
    prefix = f"{config.kv_path_prefix}/{spec.environment}"
    if spec.ref.path != prefix and not spec.ref.path.startswith(prefix + "/"):
        raise InvalidBindingError(
            f"CaptchaKeyBinding {name!r}: spec.kv.path resolves to {spec.ref.path!r}, outside "
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
    role_arn = spec.aws.role_arn if spec.aws else ""
    for field_name, arn in (("spec.aws.roleArn", role_arn), ("spec.aws.secretId", ref.secret_id)):
        match = _ACCOUNT_IN_ARN.match(arn)
        if match and match.group(1) not in aws.accounts:
            raise InvalidBindingError(
                f"{where}: {field_name} is in AWS account {match.group(1)}, which is not one "
                f"of the allowed accounts ({', '.join(aws.accounts)})"
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
