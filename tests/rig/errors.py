"""The rig's refusals, in the shape clients parse: a ``Status`` with code, reason, message.

Every rule of the rig that refuses a request raises one of these; kmock renders it as the
API server renders its errors, and the rig counts anything else raised as a crash (a
body that is not JSON, say, is the client's mistake: a 400, not a crash).
"""

from __future__ import annotations

import json
from typing import Any

import kmock

__all__ = ["api_error", "json_body"]


def api_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    """An answer such as ``409 Conflict``; ``reason`` is the Status reason clients match on."""
    return kmock.KubernetesError(status, reason, message, {})


def json_body(request: kmock.Request) -> Any:
    """The request's body as JSON; 400 if it is not JSON."""
    try:
        return json.loads(request.body)
    except ValueError:
        raise api_error(400, "BadRequest", "the request body is not JSON") from None
