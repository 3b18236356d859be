"""The CaptchaKeyBinding CRD, its copy in the chart, and the rendered manifests.

Covers:
- the chart installs exactly manifests/crds/ (byte copy in files/crds/, and the rendered
  CRD equals the source apart from the chart's labels/annotations), and ``helm.sh/
  resource-policy: keep`` by default;
- manifests/install.yaml is what ``make manifests`` renders now (fails with "run make
  manifests" on drift), and kustomization.yaml lists the Namespace, the CRD and it;
- kopf's ClusterKopfPeering CRD: the chart ships manifests/crds/' copy in ``crds/``
  (installed by Helm before the templates, so the rendered ClusterKopfPeering can be
  created in the same install), with kopf's names and a preserve-unknown-fields schema;
- the CRD's names, printer columns, status subresource, and that every schema property
  has a description;
- the example binding validates against the CRD's schema (jsonschema) with the CRD's
  defaults; bad bindings (paths with '..' or a leading '/', bad environment, reserved
  file name pattern, refresh interval out of range) fail it.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, Render, load_script, one

CRD_FILE = ROOT / "manifests" / "crds" / "captchakeys.io_captchakeybindings.yaml"
CHART_CRD_FILE = CHART / "files" / "crds" / CRD_FILE.name
PEERING_CRD_FILE = ROOT / "manifests" / "crds" / "kopf.dev_clusterkopfpeerings.yaml"


def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return doc


def openapi_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_chart_copy_of_the_crd_has_not_drifted() -> None:
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes(), (
        f"{CHART_CRD_FILE.relative_to(ROOT)} differs from {CRD_FILE.relative_to(ROOT)}: "
        "run make manifests"
    )


def test_chart_renders_the_same_crd(render: Render) -> None:
    rendered = copy.deepcopy(one(render(), "CustomResourceDefinition"))
    assert rendered["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert rendered["metadata"].pop("labels")["app.kubernetes.io/name"] == "captcha-key-agent"
    assert rendered == crd()
    assert not [d for d in render(None, "crds.install=false") if d["kind"].startswith("Custom")]
    unkept = one(render(None, "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]


def test_rendered_manifests_have_not_drifted(helm: Path) -> None:
    render_manifests = load_script("render_manifests")
    stale = [
        str(path.relative_to(ROOT))
        for path, text in render_manifests.expected_files(helm).items()
        if not path.is_file() or path.read_text() != text
    ]
    assert not stale, f"out of date: {stale}: run make manifests"


def test_kustomization_lists_everything() -> None:
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert resources == [
        "namespace.yaml",
        "crds/captchakeys.io_captchakeybindings.yaml",
        "crds/kopf.dev_clusterkopfpeerings.yaml",
        "install.yaml",
    ]
    for resource in resources:
        assert (ROOT / "manifests" / resource).is_file()
    install = [d for d in yaml.safe_load_all((ROOT / "manifests/install.yaml").read_text()) if d]
    kinds = {d["kind"] for d in install}
    assert "CustomResourceDefinition" not in kinds  # listed separately: no duplicate
    assert "Pod" not in kinds  # the helm test hook is not an install object
    namespace = yaml.safe_load((ROOT / "manifests" / "namespace.yaml").read_text())
    used = {d["metadata"]["namespace"] for d in install if "namespace" in d["metadata"]}
    assert used == {namespace["metadata"]["name"]}


def test_crd_names_and_columns() -> None:
    doc = crd()
    assert doc["metadata"]["name"] == "captchakeybindings.captchakeys.io"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "CaptchaKeyBinding",
        "captchakeybindings",
        ["ckb"],
    )
    assert doc["spec"]["scope"] == "Namespaced"
    (version,) = doc["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"].upper(): c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "ENV": ".spec.environment",
        "PATH": ".status.vaultPath",
        "VERSION": ".status.currentVersion",
        "READY": '.status.conditions[?(@.type=="Ready")].status',
        "UP-TO-DATE": ".status.rollout.upToDate",
        "CONSUMERS": ".status.rollout.consumers",
        "AGE": ".metadata.creationTimestamp",
    }


def test_every_property_is_described() -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in node.get("properties", {}).items():
            if path == "" and name == "metadata":
                continue
            if "description" not in child:
                missing.append(f"{path}.{name}")
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(openapi_schema(), "")
    assert not missing, missing


def _apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """The API server's defaulting, enough for this schema."""
    if not isinstance(obj, dict):
        return obj
    for name, child in schema.get("properties", {}).items():
        if name not in obj and "default" in child:
            obj[name] = copy.deepcopy(child["default"])
        if name in obj:
            obj[name] = _apply_defaults(child, obj[name])
    return obj


def _validate(binding: dict[str, Any]) -> dict[str, Any]:
    schema = openapi_schema()
    # Every rule is structural (no CEL): jsonschema evaluates all of them. The patterns
    # are RE2 and mean the same in Python's re for these inputs (no trailing newlines;
    # tests/operator/test_binding_rules.py covers those with Go's semantics).
    defaulted: dict[str, Any] = _apply_defaults(schema, copy.deepcopy(binding))
    jsonschema.validate(defaulted, schema)
    return defaulted


def example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (ROOT / "manifests" / "examples" / "binding-dev.yaml").read_text()
    )
    return doc


def test_example_binding_is_valid_and_defaults_apply() -> None:
    _validate(example())
    minimal = {
        "apiVersion": "captchakeys.io/v1alpha1",
        "kind": "CaptchaKeyBinding",
        "metadata": {"name": "b"},
        "spec": {"environment": "prod", "vault": {"auth": {"role": "r"}}},
    }
    spec = _validate(minimal)["spec"]
    assert spec["kv"] == {"mount": "secret", "path": "captchaai/{environment}", "field": "api_key"}
    assert spec["file"] == {"name": "api_key", "mode": 0o440}
    assert "refreshIntervalSeconds" not in spec  # the chart's sidecar default applies.
    assert spec["vault"]["auth"] == {"role": "r", "method": "kubernetes", "audience": "vault"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("environment", "Prod"),
        ("environment", "dev_1"),
        ("kv.path", "/captchaai/dev"),
        ("kv.path", "captchaai/../prod"),
        ("kv.path", "captchaai//dev"),
        ("kv.path", "captchaai/dev/"),
        ("kv.version", 0),
        ("refreshIntervalSeconds", 5),
        ("refreshIntervalSeconds", 86401),
        ("file.name", ".hidden"),
        ("file.name", "a/b"),
        ("file.name", "api_key.meta.json"),
        ("file.mode", 512),
        ("file.mode", 0o644),
        ("file.mode", 0),
        ("kv.path", "captchaai/%2e%2e/prod"),
        ("vault.auth.mount", "kubernetes/../approle"),
        ("vault.address", "vault:8200"),
        ("vault.auth.method", "token"),
        ("vault.auth.role", ""),
    ],
)
def test_bad_bindings_are_rejected(field: str, value: Any) -> None:
    binding = example()
    node = binding["spec"]
    *parents, leaf = field.split(".")
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(binding)


def test_crd_patterns_are_re2_compatible() -> None:
    """The API server compiles patterns with Go's RE2: no lookaround, no backreferences."""
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for child in node.values():
                walk(child)

    walk(openapi_schema())
    assert len(patterns) >= 10
    for pattern in patterns:
        for lookaround in ("(?=", "(?!", "(?<"):
            assert lookaround not in pattern, pattern
        assert not re.search(r"\\[1-9]", pattern), pattern
        assert pattern.startswith("^") or pattern.endswith("$"), pattern


def test_crd_spec_schema_is_the_one_source_of_rules() -> None:
    from agent.binding.schema import crd_schema

    assert openapi_schema()["properties"]["spec"] == crd_schema()
    assert "x-kubernetes-validations" not in CRD_FILE.read_text()  # nothing left to CEL


def test_kopf_peering_crd_is_shipped_in_crds_unchanged(helm: Path) -> None:
    shipped = CHART / "crds" / PEERING_CRD_FILE.name
    assert shipped.read_bytes() == PEERING_CRD_FILE.read_bytes(), (
        f"{shipped.relative_to(ROOT)} differs from {PEERING_CRD_FILE.relative_to(ROOT)}"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [PEERING_CRD_FILE.name]
    doc = yaml.safe_load(PEERING_CRD_FILE.read_text())
    assert doc["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    spec = doc["spec"]
    assert (spec["group"], spec["scope"]) == ("kopf.dev", "Cluster")
    assert (spec["names"]["kind"], spec["names"]["plural"]) == (
        "ClusterKopfPeering",
        "clusterkopfpeerings",
    )
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["type"] == "object"
    assert schema["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["properties"]["status"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    args = ["template", "r", str(CHART), "--include-crds"]
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout) if d]
    assert names.index("clusterkopfpeerings.kopf.dev") < names.index("r-captcha-key-agent")
