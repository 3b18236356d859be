"""``helm test`` run for real: the chart's test pod's command against a running operator.

Covers:
- the arguments the chart's test hook renders (``helm template``, the real helm) make
  ``captchakey check-webhook`` exit 0 against the running operator, pointed at its
  loopback address instead of the Service name, trusting only the operator's CA;
- it fails (exit 1) with a message naming the cause and what to check: a CA that did not
  sign the webhook's certificate, a webhook that is down (nothing listening), a server
  that answers something other than an AdmissionReview;
- no traceback in any of those cases.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from agent.operator import tls
from tests.chart.conftest import CHART, ROOT, load_script, run_helm
from tests.rig.helpers import free_port
from tests.rig.operator import RunningOperator

CAPTCHAKEY = str(Path(sys.executable).with_name("captchakey"))


@pytest.fixture(scope="module")
def hook_args() -> list[str]:
    """The test pod's container arguments, as the chart renders them."""
    helm = load_script("fetch_helm").fetch_helm(ROOT / ".tools")
    rendered = run_helm(
        helm,
        "template",
        "captcha-key-agent",
        str(CHART),
        *("-n", "captcha-system"),
        *("--show-only", "templates/tests/test-webhook.yaml"),
    )
    assert rendered.returncode == 0, rendered.stderr
    pod = yaml.safe_load(rendered.stdout)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    args: list[str] = container["args"]
    assert args[0] == "check-webhook"
    return args


def localized(args: list[str], base_url: str, ca_file: Path) -> list[str]:
    """The same command, with the Service's host and the mounted CA path made local."""
    url = urlsplit(args[args.index("--url") + 1])
    assert url.scheme == "https"
    local = list(args)
    local[args.index("--url") + 1] = f"{base_url}{url.path}"
    local[args.index("--ca-file") + 1] = str(ca_file)
    return local


def check(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAPTCHAKEY, *args, "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_hook_command_passes_against_a_running_operator(
    operator: RunningOperator, hook_args: list[str]
) -> None:
    result = await asyncio.to_thread(check, localized(hook_args, operator.url, operator.ca_file))
    assert result.returncode == 0, result.stderr
    assert "answered and allowed a pod that did not opt in" in result.stdout


async def test_wrong_ca_fails_clearly(
    operator: RunningOperator, hook_args: list[str], tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(tls.generate(["127.0.0.1"]).ca_cert)
    result = await asyncio.to_thread(check, localized(hook_args, operator.url, other_ca))
    assert result.returncode == 1
    assert "TLS with the webhook at" in result.stderr
    assert "certificate verify failed" in result.stderr
    assert "ca.crt of the webhook's TLS Secret" in result.stderr
    assert "Traceback" not in result.stderr


def test_webhook_down_fails_clearly(hook_args: list[str], tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(tls.generate(["127.0.0.1"]).ca_cert)
    result = check(localized(hook_args, f"https://127.0.0.1:{free_port()}", ca))
    assert result.returncode == 1
    assert "cannot connect to the webhook at" in result.stderr
    assert "is the operator running and ready" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def not_a_webhook(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server with the right certificate that answers 200 with an HTML page."""
    certs = tls.generate(["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(certs.cert)
    (tmp_path / "tls.key").write_bytes(certs.key)
    (tmp_path / "ca.crt").write_bytes(certs.ca_cert)

    class Page(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"<html>ingress default backend</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", tmp_path / "ca.crt"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_something_else_answering_fails_clearly(
    hook_args: list[str], not_a_webhook: tuple[str, Path]
) -> None:
    url, ca = not_a_webhook
    result = check(localized(hook_args, url, ca))
    assert result.returncode == 1
    assert "did not answer with an AdmissionReview" in result.stderr
    assert "ingress default backend" in result.stderr
