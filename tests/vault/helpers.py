"""Set-up steps on the real OpenBao shared by the Vault, agent and secrecy tests.

Every identity gets a mount or policy of its own (names carry a random suffix), so
tests sharing the session's server never see each other's roles or tokens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tests.rig.openbao import OpenBaoServer


def worker_policy(*paths: str, mount: str = "secret") -> str:
    """The guide's captcha-worker policy, for the given KV paths."""
    return "\n".join(
        f'path "{mount}/data/{path}" {{ capabilities = ["read"] }}\n'
        f'path "{mount}/metadata/{path}" {{ capabilities = ["read"] }}'
        for path in paths
    )


def create_policy(openbao: OpenBaoServer, *paths: str) -> str:
    name = f"worker-{uuid.uuid4().hex[:10]}"
    openbao.client().sys.create_or_update_policy(name, worker_policy(*paths))
    return name


def token_for(openbao: OpenBaoServer, *paths: str, **create: object) -> str:
    """A token whose only policy reads ``paths`` (``create`` goes to token create)."""
    policy = create_policy(openbao, *paths)
    response = openbao.client().auth.token.create(policies=[policy], **create)
    return str(response["auth"]["client_token"])


@dataclass(frozen=True)
class AppRole:
    mount: str
    role_id: str
    secret_id: str


def approle_for(openbao: OpenBaoServer, *paths: str, **role: object) -> AppRole:
    """An AppRole on a mount of its own, whose policy reads ``paths``."""
    root = openbao.client()
    mount = f"approle-{uuid.uuid4().hex[:10]}"
    root.sys.enable_auth_method("approle", path=mount)
    policy = create_policy(openbao, *paths)
    root.auth.approle.create_or_update_approle(
        "worker", token_policies=[policy], mount_point=mount, **role
    )
    role_id = root.auth.approle.read_role_id("worker", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("worker", mount_point=mount)["data"][
        "secret_id"
    ]
    return AppRole(mount, role_id, secret_id)
