"""A KV version 1 mount is named as such, with the fix, not reported as a missing secret.

Covers, against the real OpenBao: a key stored in a KV v1 mount, read by the agent's
client (KV v2 paths) with a token that may read only that path, gives
``KvVersionOneError`` (still a ``SecretNotFoundError``, reason ``SecretNotFound``) whose
message says the mount is KV version 1 and how to fix it (``vault kv enable-versioning``
or another mount), for the data read and the metadata read; after
``enable-versioning`` the same client reads the key. A secret that is really missing
from a KV v2 mount keeps the "no secret" message.
"""

from __future__ import annotations

import time
import uuid

import pytest

from agent.vault import KvVersionOneError, SecretNotFoundError, SecretRef, TokenAuth, VaultClient
from tests.rig.openbao import OpenBaoServer
from tests.vault.helpers import token_for

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def kv1_mount(openbao: OpenBaoServer) -> str:
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    openbao.client().sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    openbao.client().secrets.kv.v1.create_or_update_secret(
        "captchaai/dev", {"api_key": KEY}, mount_point=mount
    )
    return mount


def test_a_kv_v1_mount_is_named_with_the_fix(openbao: OpenBaoServer, kv1_mount: str) -> None:
    policy = (
        f'path "{kv1_mount}/data/captchaai/dev" {{ capabilities = ["read"] }}\n'
        f'path "{kv1_mount}/metadata/captchaai/dev" {{ capabilities = ["read"] }}\n'
    )
    openbao.client().sys.create_or_update_policy(f"{kv1_mount}-reader", policy)
    token = openbao.client().auth.token.create(policies=[f"{kv1_mount}-reader"])["auth"][
        "client_token"
    ]
    client = VaultClient(openbao.addr, TokenAuth(token=token))
    ref = SecretRef("captchaai/dev", mount=kv1_mount)
    for read in (client.read_key, client.metadata):
        with pytest.raises(KvVersionOneError) as info:
            read(ref)
        message = str(info.value)
        assert f'"{kv1_mount}/" is a KV version 1 mount' in message
        assert f"vault kv enable-versioning {kv1_mount}" in message
        assert "spec.kv.mount" in message
        assert "no secret at" not in message
        assert KEY not in message
        assert info.value.reason == "SecretNotFound"
        assert isinstance(info.value, SecretNotFoundError)

    openbao.client().sys.tune_mount_configuration(kv1_mount, options={"version": "2"})
    deadline = time.monotonic() + 10  # the upgrade runs in the background.
    while True:
        try:
            assert client.read_key(ref).value == KEY
            break
        except SecretNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_missing_secret_in_kv_v2_keeps_its_message(openbao: OpenBaoServer) -> None:
    path = f"captchaai/absent-{uuid.uuid4().hex[:8]}"
    client = VaultClient(openbao.addr, TokenAuth(token=token_for(openbao, path)))
    with pytest.raises(SecretNotFoundError) as info:
        client.read_key(SecretRef(path))
    assert not isinstance(info.value, KvVersionOneError)
    assert "no secret at" in str(info.value)
