"""helm lint and offline schema validation of everything the chart renders.

Covers, for the default values and every file in ``charts/captcha-key-agent/ci/``:
- ``helm lint --strict`` passes;
- ``helm template`` renders, and every rendered object (the CRD included, the test hook
  pod included) validates strictly against the Kubernetes 1.29 and 1.37 schemas with
  ``kubernetes-validate``; only custom resources of other projects (cert-manager,
  Prometheus Operator, kopf) are left out, and those are listed explicitly; the CRDs in
  the chart's ``crds/`` (not rendered by ``helm template``) are validated as files;
- there are several non-default values files, so the matrix is real.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES, Render, run_helm, values_id

VALUES = [None, *CI_VALUES]
# Kinds whose schemas kubernetes-validate cannot know (CRDs of other projects).
FOREIGN_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kopf.dev/v1", "ClusterKopfPeering"),  # kopf's; its CRD is validated below
}


def test_there_are_several_ci_values_files() -> None:
    assert len(CI_VALUES) >= 4, CI_VALUES


@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_helm_lint_strict(helm: Path, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        args += ["-f", str(values)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube_version", ["1.29", "1.37"])
@pytest.mark.parametrize("values", VALUES, ids=values_id)
def test_rendered_objects_are_valid_kubernetes(
    render: Render, values: Path | None, kube_version: str
) -> None:
    docs = render(values)
    validated = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in FOREIGN_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid: {exc}")
        validated += 1
    assert validated >= 10


def test_every_name_fits_a_dns_label(render: Render) -> None:
    long_release = ["fullnameOverride=" + "x" * 63]
    for doc in render(None, *long_release):
        name = doc["metadata"]["name"]
        if doc["kind"] != "CustomResourceDefinition" and "." not in name:
            assert len(name) <= 63, name
            assert not name.endswith("-"), name


@pytest.mark.parametrize("kube_version", ["1.29", "1.37"])
def test_shipped_crds_are_valid_kubernetes(kube_version: str) -> None:
    """crds/ is not in ``helm template``'s output: validate its files directly."""
    files = sorted((CHART / "crds").glob("*.yaml"))
    assert files
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} invalid: {exc}")
