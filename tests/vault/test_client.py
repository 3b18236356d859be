"""KV v2 reads and error mapping of ``agent.vault.VaultClient``, against a real OpenBao.

Covers:
- read of the latest version and of a pinned version (value and version);
- the metadata read: current version and which versions are live / deleted / destroyed;
- write_key (``vault kv put``) returns the new version;
- token reuse: many reads with one login (``client.logins == 1``);
- errors, each an actionable message that never carries a value:
  missing field (lists the field names present, not their values), empty value,
  path not found, pinned version deleted / destroyed / absent (VersionUnavailableError),
  Vault sealed (VaultSealedError, named as such) and Vault unreachable
  (VaultUnavailableError, both transient), TLS failure
  (VaultTLSError mentioning VAULT_CACERT);
- ``repr`` of the client and of a KeyVersion never shows a credential or the key.
"""

from __future__ import annotations

import pytest

from agent.keyrules import KeyRejectedError
from agent.vault import (
    FieldMissingError,
    SecretNotFoundError,
    SecretRef,
    TokenAuth,
    VaultClient,
    VaultSealedError,
    VaultTLSError,
    VaultUnavailableError,
    VersionUnavailableError,
)
from tests.rig.openbao import OpenBaoServer
from tests.vault.helpers import token_for


def root_client(openbao: OpenBaoServer) -> VaultClient:
    return VaultClient(openbao.addr, TokenAuth(token=openbao.root_token))


def test_reads_latest_and_pinned_versions(openbao: OpenBaoServer, unique_path: str) -> None:
    assert openbao.put_key(unique_path, "first-key-0000000000000000000000") == 1
    assert openbao.put_key(unique_path, "second-key-000000000000000000000") == 2
    client = root_client(openbao)

    latest = client.read_key(SecretRef(unique_path))
    assert (latest.value, latest.version) == ("second-key-000000000000000000000", 2)
    assert latest.ref == SecretRef(unique_path)

    pinned = client.read_key(SecretRef(unique_path, version=1))
    assert (pinned.value, pinned.version) == ("first-key-0000000000000000000000", 1)


def test_reads_a_custom_field_and_mount_path(openbao: OpenBaoServer, unique_path: str) -> None:
    openbao.put_key(unique_path, "custom-field-value-0000000000000", field="key")
    key = root_client(openbao).read_key(SecretRef(unique_path, field="key"))
    assert key.value == "custom-field-value-0000000000000"


def test_metadata_reports_current_and_live_versions(
    openbao: OpenBaoServer, unique_path: str
) -> None:
    for n in range(1, 5):
        openbao.put_key(unique_path, f"key-{n}" * 6)
    root = openbao.client()
    root.secrets.kv.v2.delete_secret_versions(unique_path, versions=[2])
    root.secrets.kv.v2.destroy_secret_versions(unique_path, versions=[3])
    meta = root_client(openbao).metadata(SecretRef(unique_path))
    assert meta.current_version == 4
    assert meta.live_versions == frozenset({1, 4})
    assert dict(meta.version_states) == {1: "live", 2: "deleted", 3: "destroyed", 4: "live"}


def test_write_key_stores_the_next_version(openbao: OpenBaoServer, unique_path: str) -> None:
    client = root_client(openbao)
    ref = SecretRef(unique_path)
    assert client.write_key(ref, "written-by-client-000000000000000") == 1
    assert client.write_key(ref, "written-again-0000000000000000\n") == 2
    assert client.read_key(ref).value == "written-again-0000000000000000"  # one newline dropped.
    for refused in ("   ", "  spaced-0000000000000000  ", "two\nlines"):
        with pytest.raises(KeyRejectedError) as info:
            client.write_key(ref, refused)
        assert f"field 'api_key' of \"secret/data/{unique_path}\"" in str(info.value)
    assert client.metadata(ref).current_version == 2  # nothing refused was stored.


def test_token_is_reused_across_many_reads(openbao: OpenBaoServer, unique_path: str) -> None:
    openbao.put_key(unique_path, "reused-token-key-000000000000000")
    client = VaultClient(openbao.addr, TokenAuth(token=token_for(openbao, unique_path)))
    ref = SecretRef(unique_path)
    for _ in range(50):
        assert client.read_key(ref).version == 1
        assert client.metadata(ref).current_version == 1
    assert client.logins == 1


def test_missing_field_lists_field_names_not_values(
    openbao: OpenBaoServer, unique_path: str
) -> None:
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path=unique_path, secret={"token": "value-one-SECRET", "other": "value-two-SECRET"}
    )
    with pytest.raises(FieldMissingError) as info:
        root_client(openbao).read_key(SecretRef(unique_path))
    message = str(info.value)
    assert "'api_key'" in message
    assert "'other'" in message
    assert "'token'" in message
    assert f"secret/data/{unique_path}" in message
    assert "SECRET" not in message
    assert "--field" in message


def test_empty_value_is_an_error(openbao: OpenBaoServer, unique_path: str) -> None:
    openbao.put_key(unique_path, "   ")
    with pytest.raises(KeyRejectedError) as info:
        root_client(openbao).read_key(SecretRef(unique_path))
    assert "'api_key'" in str(info.value)
    assert f"secret/data/{unique_path}" in str(info.value)
    assert "a space at position 1" in str(info.value)


def test_path_not_found(openbao: OpenBaoServer, unique_path: str) -> None:
    client = root_client(openbao)
    with pytest.raises(SecretNotFoundError) as info:
        client.read_key(SecretRef(unique_path))
    assert f"secret/data/{unique_path}" in str(info.value)
    assert f"vault kv put secret/{unique_path}" in str(info.value)
    with pytest.raises(SecretNotFoundError):
        client.metadata(SecretRef(unique_path))


@pytest.mark.parametrize("state", ["deleted", "destroyed", "not present"])
def test_unavailable_pinned_version(openbao: OpenBaoServer, unique_path: str, state: str) -> None:
    for n in range(1, 4):
        openbao.put_key(unique_path, f"pinned-key-{n}" * 3)
    root = openbao.client()
    version = 2
    if state == "deleted":
        root.secrets.kv.v2.delete_secret_versions(unique_path, versions=[2])
    elif state == "destroyed":
        root.secrets.kv.v2.destroy_secret_versions(unique_path, versions=[2])
    else:
        version = 99
    with pytest.raises(VersionUnavailableError) as info:
        root_client(openbao).read_key(SecretRef(unique_path, version=version))
    message = str(info.value)
    assert f"version {version} of" in message
    assert f" is {state}" in message
    assert "current version is 3" in message
    assert "pinned-key" not in message


def test_sealed_vault_is_unavailable(fresh_openbao: OpenBaoServer) -> None:
    fresh_openbao.put_key("captchaai/dev", "sealed-test-key-00000000000000000")
    client = root_client(fresh_openbao)
    ref = SecretRef("captchaai/dev")
    assert client.read_key(ref).version == 1  # logged in, token cached.
    fresh_openbao.client().sys.seal()
    with pytest.raises(VaultSealedError) as info:
        client.read_key(ref)
    assert info.value.reason == "VaultSealed"
    assert isinstance(info.value, VaultUnavailableError)  # retried like an outage.
    assert f"Vault at {fresh_openbao.addr} is sealed" in str(info.value)
    assert "vault operator unseal" in str(info.value)
    with pytest.raises(VaultUnavailableError):
        client.metadata(ref)
    # A client that has not logged in yet gets the same transient error at login.
    with pytest.raises(VaultUnavailableError):
        root_client(fresh_openbao).read_key(ref)


def test_unreachable_vault_is_unavailable(fresh_openbao: OpenBaoServer) -> None:
    fresh_openbao.put_key("captchaai/dev", "unreachable-key-0000000000000000")
    client = root_client(fresh_openbao)
    ref = SecretRef("captchaai/dev")
    assert client.read_key(ref).version == 1
    fresh_openbao.stop()
    with pytest.raises(VaultUnavailableError) as info:
        client.read_key(ref)
    assert fresh_openbao.addr in str(info.value)
    assert "unreachable-key" not in str(info.value)
    with pytest.raises(VaultUnavailableError):
        root_client(fresh_openbao).metadata(ref)


def test_tls_failure_mentions_vault_cacert(openbao: OpenBaoServer, unique_path: str) -> None:
    https_addr = openbao.addr.replace("http://", "https://")
    client = VaultClient(https_addr, TokenAuth(token=openbao.root_token), timeout=5)
    with pytest.raises(VaultTLSError) as info:
        client.read_key(SecretRef(unique_path))
    assert "VAULT_CACERT" in str(info.value)
    assert https_addr in str(info.value)


def test_reprs_hide_credentials_and_key(openbao: OpenBaoServer, unique_path: str) -> None:
    openbao.put_key(unique_path, "repr-hidden-key-00000000000000000")
    token = token_for(openbao, unique_path)
    client = VaultClient(openbao.addr, TokenAuth(token=token))
    key = client.read_key(SecretRef(unique_path))
    assert token not in repr(client)
    assert token not in repr(client.auth)
    assert "repr-hidden-key" not in repr(key)
    assert "repr-hidden-key" not in str(key)
