"""Auth methods of ``agent.vault`` and the client's token lifecycle, against a real OpenBao.

Covers:
- token auth: from VAULT_TOKEN (``auth_from_settings``) and from a token file; no
  token at all, a revoked token and an expired non-renewable token each raise an
  ``AuthenticationError`` that points at AppRole / Kubernetes auth;
- AppRole: role id + secret id from the environment and from a secret-id file (read
  at login), a wrong or missing secret id is an ``AuthenticationError``;
- per-environment isolation: an identity whose policy covers only ``captchaai/dev``
  gets ``PermissionDeniedError`` on ``captchaai/prod`` naming the path and the
  capability, while dev still reads (AppRole and Kubernetes auth);
- short-TTL tokens (AppRole, token_ttl 1 s, token_max_ttl 2 s): reads keep working
  across several TTLs, re-login happens, and logins << reads;
- renewal (short TTL, long max TTL; AppRole and a plain token): one login only;
- a token revoked mid-run by root: the next read logs in again and succeeds;
- Kubernetes auth (OpenBao's real TokenReview against the kmock rig) and JWT auth:
  the token file is read afresh at each login (the file is rewritten with a new token
  between logins, the old one being refused), and a rejected token is an
  ``AuthenticationError`` naming role and mount;
- a 403 names the token's policies (from lookup-self) and who holds them in the auth
  method's own words: the role for kubernetes, jwt and AppRole, the token itself (no
  role) under token auth.
"""

from __future__ import annotations

import time
from pathlib import Path

import hvac.exceptions
import pytest

from agent.vault import (
    AppRoleAuth,
    AuthenticationError,
    JwtAuth,
    KubernetesAuth,
    PermissionDeniedError,
    SecretRef,
    TokenAuth,
    VaultClient,
    auth_from_settings,
)
from tests.rig.fixtures import BaoAuth
from tests.rig.helpers import wait_until
from tests.rig.kube import BaoRole, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.vault.helpers import approle_for, create_policy, token_for


@pytest.fixture
def envs(openbao: OpenBaoServer, unique_path: str) -> tuple[str, str]:
    """A dev and a prod path (unique to the test), each with its own key."""
    dev, prod = f"{unique_path}/dev", f"{unique_path}/prod"
    openbao.put_key(dev, "dev-key-000000000000000000000000")
    openbao.put_key(prod, "prod-key-00000000000000000000000")
    return dev, prod


def assert_isolated(client: VaultClient, dev: str, prod: str) -> None:
    with pytest.raises(PermissionDeniedError) as info:
        client.read_key(SecretRef(prod))
    message = str(info.value)
    assert f'"secret/data/{prod}"' in message
    assert '"read"' in message
    assert "403" in message
    assert "prod-key" not in message
    assert client.read_key(SecretRef(dev)).value == "dev-key-000000000000000000000000"
    with pytest.raises(PermissionDeniedError):
        client.metadata(SecretRef(prod))
    assert client.metadata(SecretRef(dev)).current_version == 1


def token_alive(openbao: OpenBaoServer, token: str) -> bool:
    try:
        openbao.client().auth.token.lookup(token)
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        return False
    return True


# -- token --------------------------------------------------------------------------


def test_token_from_environment(openbao: OpenBaoServer, envs: tuple[str, str]) -> None:
    dev, prod = envs
    auth = auth_from_settings("token", environ={"VAULT_TOKEN": token_for(openbao, dev)})
    client = VaultClient(openbao.addr, auth)
    assert_isolated(client, dev, prod)
    assert client.logins == 1


def test_token_from_file(openbao: OpenBaoServer, envs: tuple[str, str], tmp_path: Path) -> None:
    dev, _ = envs
    token_file = tmp_path / "token"
    token_file.write_text(token_for(openbao, dev) + "\n")
    auth = auth_from_settings("token", token_file=token_file, environ={})
    assert VaultClient(openbao.addr, auth).read_key(SecretRef(dev)).version == 1


def test_no_token_is_an_actionable_error(openbao: OpenBaoServer, envs: tuple[str, str]) -> None:
    client = VaultClient(openbao.addr, auth_from_settings("token", environ={}))
    with pytest.raises(AuthenticationError, match="VAULT_TOKEN"):
        client.read_key(SecretRef(envs[0]))


def test_revoked_static_token_points_at_renewable_auth(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    token = token_for(openbao, envs[0])
    client = VaultClient(openbao.addr, TokenAuth(token=token))
    assert client.read_key(SecretRef(envs[0])).version == 1
    openbao.client().auth.token.revoke(token)
    with pytest.raises(AuthenticationError) as info:
        client.read_key(SecretRef(envs[0]))
    assert "AppRole" in str(info.value)
    assert token not in str(info.value)


def test_expired_static_token_points_at_renewable_auth(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    token = token_for(openbao, envs[0], ttl="1s", renewable=False)
    client = VaultClient(openbao.addr, TokenAuth(token=token))
    assert client.read_key(SecretRef(envs[0])).version == 1
    wait_until(lambda: not token_alive(openbao, token), timeout=10, step=0.1)
    with pytest.raises(AuthenticationError) as info:
        client.read_key(SecretRef(envs[0]))
    assert "AppRole" in str(info.value)


def test_renewable_token_is_renewed_not_replaced(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    token = token_for(openbao, envs[0], ttl="1s", explicit_max_ttl="1h", renewable=True)
    client = VaultClient(openbao.addr, TokenAuth(token=token))
    reads = read_for(client, SecretRef(envs[0]), seconds=2.5)
    assert reads > 20
    assert client.logins == 1
    assert token_alive(openbao, token)


# -- AppRole ------------------------------------------------------------------------


def test_approle_from_environment(openbao: OpenBaoServer, envs: tuple[str, str]) -> None:
    dev, prod = envs
    role = approle_for(openbao, dev)
    auth = auth_from_settings(
        "approle",
        mount=role.mount,
        environ={"VAULT_ROLE_ID": role.role_id, "VAULT_SECRET_ID": role.secret_id},
    )
    client = VaultClient(openbao.addr, auth)
    assert_isolated(client, dev, prod)
    assert client.logins == 1
    assert role.secret_id not in repr(auth)
    assert role.role_id not in repr(auth)


def test_approle_secret_id_from_file_read_at_login(
    openbao: OpenBaoServer, envs: tuple[str, str], tmp_path: Path
) -> None:
    dev, _ = envs
    role = approle_for(openbao, dev)
    secret_file = tmp_path / "secret-id"
    auth = auth_from_settings(
        "approle", role=role.role_id, mount=role.mount, secret_id_file=secret_file, environ={}
    )
    secret_file.write_text(role.secret_id + "\n")  # written after the auth was built.
    assert VaultClient(openbao.addr, auth).read_key(SecretRef(dev)).version == 1


def test_approle_wrong_or_missing_secret_id(openbao: OpenBaoServer, envs: tuple[str, str]) -> None:
    role = approle_for(openbao, envs[0])
    wrong = AppRoleAuth(role_id=role.role_id, secret_id="not-the-secret-id", mount=role.mount)
    with pytest.raises(AuthenticationError) as info:
        VaultClient(openbao.addr, wrong).read_key(SecretRef(envs[0]))
    assert f"auth/{role.mount}" in str(info.value)
    assert "not-the-secret-id" not in str(info.value)
    missing = AppRoleAuth(role_id=role.role_id, mount=role.mount)
    with pytest.raises(AuthenticationError, match="VAULT_SECRET_ID"):
        VaultClient(openbao.addr, missing).read_key(SecretRef(envs[0]))
    with pytest.raises(AuthenticationError, match="VAULT_ROLE_ID"):
        auth_from_settings("approle", environ={})


def read_for(client: VaultClient, ref: SecretRef, *, seconds: float) -> int:
    """Read every 20 ms for ``seconds``; every read must succeed. Returns the count."""
    reads = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert client.read_key(ref).version == 1
        reads += 1
        time.sleep(0.02)
    return reads


def test_short_ttl_tokens_are_replaced_by_login(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    role = approle_for(openbao, envs[0], token_ttl="1s", token_max_ttl="2s")
    client = VaultClient(openbao.addr, AppRoleAuth(role.role_id, role.secret_id, mount=role.mount))
    reads = read_for(client, SecretRef(envs[0]), seconds=4.5)
    assert client.logins >= 2  # the max TTL (2 s) was crossed: a new login was needed.
    assert client.logins * 10 < reads


def test_renewable_approle_token_keeps_one_login(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    role = approle_for(openbao, envs[0], token_ttl="1s", token_max_ttl="1h")
    client = VaultClient(openbao.addr, AppRoleAuth(role.role_id, role.secret_id, mount=role.mount))
    reads = read_for(client, SecretRef(envs[0]), seconds=2.5)
    assert reads > 20
    assert client.logins == 1


def test_token_revoked_mid_run_triggers_a_new_login(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    role = approle_for(openbao, envs[0])
    client = VaultClient(openbao.addr, AppRoleAuth(role.role_id, role.secret_id, mount=role.mount))
    ref = SecretRef(envs[0])
    for _ in range(5):
        client.read_key(ref)
    assert client.logins == 1
    openbao.client().sys.revoke_prefix(f"auth/{role.mount}/login")
    assert client.read_key(ref).version == 1
    assert client.logins == 2
    assert client.metadata(ref).current_version == 1
    assert client.logins == 2


# -- Kubernetes and JWT, through the kmock rig --------------------------------------


def _service_account_auth(
    bao_auth: BaoAuth, kube: RealisticKubernetes, dev: str, token_file: Path
) -> tuple[VaultClient, str]:
    policy = create_policy(bao_auth.openbao, dev)
    bao_auth.add_role(BaoRole("solver", ["solver-dev"], ["solver"], policies=[policy]))
    first = kube.issue_token("solver-dev", "solver")
    token_file.write_text(first)
    cls = KubernetesAuth if bao_auth.method == "kubernetes" else JwtAuth
    auth = cls(role="solver", mount=bao_auth.mount, token_file=token_file)
    return VaultClient(bao_auth.openbao.addr, auth), first


@pytest.mark.parametrize("method", ["kubernetes", "jwt"])
def test_service_account_auth_reads_its_token_file_afresh(
    request: pytest.FixtureRequest,
    kube: RealisticKubernetes,
    envs: tuple[str, str],
    tmp_path: Path,
    method: str,
) -> None:
    bao_auth: BaoAuth = request.getfixturevalue(
        "kube_openbao" if method == "kubernetes" else "kube_jwt_openbao"
    )
    dev, prod = envs
    token_file = tmp_path / "token"
    client, first = _service_account_auth(bao_auth, kube, dev, token_file)
    assert_isolated(client, dev, prod)
    assert client.logins == 1

    # The kubelet rotates the projected token; the old one becomes invalid.
    kube.revoke_token(first)
    token_file.write_text(kube.issue_token("solver-dev", "solver"))
    bao_auth.openbao.client().sys.revoke_prefix(f"auth/{bao_auth.mount}/login")
    assert client.read_key(SecretRef(dev)).version == 1
    assert client.logins == 2

    # A token the role does not accept (another service account) now sits in the file:
    # the next login reads it, and is refused with a message that says what to check.
    intruder = kube.issue_token("solver-dev", "intruder")
    token_file.write_text(intruder)
    bao_auth.openbao.client().sys.revoke_prefix(f"auth/{bao_auth.mount}/login")
    with pytest.raises(AuthenticationError) as info:
        client.read_key(SecretRef(dev))
    message = str(info.value)
    assert "'solver'" in message
    assert f"auth/{bao_auth.mount}" in message
    assert intruder not in message


def test_kubernetes_auth_refuses_a_revoked_token(
    kube: RealisticKubernetes, kube_openbao: BaoAuth, envs: tuple[str, str], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    client, first = _service_account_auth(kube_openbao, kube, envs[0], token_file)
    kube.revoke_token(first)
    with pytest.raises(AuthenticationError) as info:
        client.read_key(SecretRef(envs[0]))
    message = str(info.value)
    assert "service account" in message
    assert first not in message


def test_missing_token_file_is_an_actionable_error(
    openbao: OpenBaoServer, envs: tuple[str, str], tmp_path: Path
) -> None:
    auth = KubernetesAuth(role="solver", token_file=tmp_path / "absent")
    with pytest.raises(AuthenticationError) as info:
        VaultClient(openbao.addr, auth).read_key(SecretRef(envs[0]))
    assert str(tmp_path / "absent") in str(info.value)
    assert "projected token volume" in str(info.value)
    with pytest.raises(AuthenticationError, match="--role"):
        auth_from_settings("kubernetes", environ={})


# -- what a 403 says: the token's policies and the method's own words --------------------


def forbidden_message(client: VaultClient, path: str) -> str:
    with pytest.raises(PermissionDeniedError) as info:
        client.read_key(SecretRef(path))
    return str(info.value)


def test_403_under_token_auth_names_the_tokens_policies_and_no_role(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    dev, prod = envs
    policy = create_policy(openbao, dev)
    token = openbao.client().auth.token.create(policies=[policy])["auth"]["client_token"]
    message = forbidden_message(VaultClient(openbao.addr, TokenAuth(token=token)), prod)
    assert f"the token's policies (default, {policy})" in message
    assert "this token (token auth has no role" in message
    assert "role '" not in message
    assert f'path "secret/data/{prod}" {{ capabilities = ["read"] }}' in message


def test_403_under_approle_names_the_role_and_its_policies(
    openbao: OpenBaoServer, envs: tuple[str, str]
) -> None:
    dev, prod = envs
    role = approle_for(openbao, dev)
    client = VaultClient(openbao.addr, AppRoleAuth(role.role_id, role.secret_id, mount=role.mount))
    message = forbidden_message(client, prod)
    policies = message.split("the token's policies (", 1)[1].split(")", 1)[0].split(", ")
    assert "default" in policies
    assert any(p.startswith("worker-") for p in policies)
    assert f"the Vault role 'worker' (auth/{role.mount}/role/worker, token_policies)" in message


@pytest.mark.parametrize("method", ["kubernetes", "jwt"])
def test_403_under_service_account_auth_names_the_role(
    request: pytest.FixtureRequest,
    kube: RealisticKubernetes,
    envs: tuple[str, str],
    tmp_path: Path,
    method: str,
) -> None:
    bao_auth: BaoAuth = request.getfixturevalue(
        "kube_openbao" if method == "kubernetes" else "kube_jwt_openbao"
    )
    dev, prod = envs
    client, _ = _service_account_auth(bao_auth, kube, dev, tmp_path / "token")
    message = forbidden_message(client, prod)
    assert "the token's policies (" in message
    assert f"the Vault role 'solver' (auth/{bao_auth.mount}/role/solver" in message
