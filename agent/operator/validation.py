"""What the validating webhook checks beyond the CRD schema: the operator's policy.

The schema knows shapes; only the operator knows which environments exist here and
which KV mount and prefix bindings may read. Without this check, a binding in any
namespace could point its consumers (and their audit trail) at any path its role can
read, for instance another team's environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.binding import BindingSpec, InvalidBindingError
from agent.operator.config import OperatorConfig

__all__ = ["validate_binding"]


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
