#!/usr/bin/env python3
"""Generate the chart's README.md from values.yaml's ``# --`` comments and the schema.

    python scripts/chart_readme.py            # print the README
    python scripts/chart_readme.py --write    # write charts/captcha-key-agent/README.md
    python scripts/chart_readme.py --check    # exit 1 when the README is out of date

The convention is helm-docs' (as external-secrets uses it): a comment block that starts
with ``# --`` documents the key on the line right after it. Every key gets one row: its
dotted name, its type (from values.schema.json, so the table says what the chart
accepts), its default (the value in values.yaml, as JSON) and the description. A key
whose value is a map is documented as a whole when it has a ``# --`` comment of its own;
otherwise its children are. A value without a description is an error, so the README
cannot silently miss one (``make chart-docs`` runs this; tests/chart/test_readme.py
fails on drift).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "captcha-key-agent"
README = CHART / "README.md"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
_DOC = re.compile(r"^ *# -- ?(?P<text>.*)$")
_MORE = re.compile(r"^ *#(?: (?P<text>.*))?$")


class Value(NamedTuple):
    name: str
    type: str
    default: str
    description: str


def documented_keys(values_text: str) -> dict[str, str]:
    """Dotted key -> description, for every key with a ``# --`` block right above it."""
    docs: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in values_text.splitlines():
        if (doc := _DOC.match(line)) is not None:
            pending = [doc.group("text").strip()]
            continue
        if pending is not None and (more := _MORE.match(line)) is not None:
            pending.append((more.group("text") or "").strip())
            continue
        if (key := _KEY.match(line)) is None:  # a blank line, a list item, a plain comment.
            pending = None
            continue
        indent = len(key.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group("key")))
        if pending is not None:
            docs[".".join(name for _, name in stack)] = " ".join(p for p in pending if p)
        pending = None
    return docs


def _node_at(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node = schema
    for part in dotted.split("."):
        child: dict[str, Any] | None = node.get("properties", {}).get(part)
        if child is None:
            return None
        node = child
    return node


def schema_type(schema: dict[str, Any], dotted: str) -> str | None:
    """The type the schema accepts at ``dotted`` (alternatives joined), or None if unsaid."""
    node = _node_at(schema, dotted)
    if node is None:
        return None
    kinds = _types(node)
    if not kinds:
        return None
    text = " or ".join(kinds)
    if "enum" in node:
        text += " (" + ", ".join(f"`{json.dumps(choice)}`" for choice in node["enum"]) + ")"
    return text


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    if kind is not None:
        return list(kind) if isinstance(kind, list) else [str(kind)]
    found: list[str] = []
    for alternative in node.get("oneOf", []) + node.get("anyOf", []):
        found += [k for k in _types(alternative) if k not in found]
    return found


def inferred_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def walk(
    values: dict[str, Any], docs: dict[str, str], schema: dict[str, Any], prefix: str = ""
) -> tuple[list[Value], list[str]]:
    """Rows for every documented key; and the keys that are neither documented nor maps."""
    rows: list[Value] = []
    missing: list[str] = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if dotted in docs:
            kind = schema_type(schema, dotted) or inferred_type(value)
            default = json.dumps(value, ensure_ascii=False)
            rows.append(Value(dotted, kind, default, docs[dotted]))
        elif isinstance(value, dict) and value:
            sub_rows, sub_missing = walk(value, docs, schema, f"{dotted}.")
            rows += sub_rows
            missing += sub_missing
        else:
            missing.append(dotted)
    return rows, missing


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(chart_dir: Path = CHART) -> str:
    """The README for the chart in ``chart_dir``; SystemExit naming undocumented values."""
    values_text = (chart_dir / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    rows, missing = walk(values, documented_keys(values_text), schema)
    if missing:
        names = ", ".join(missing)
        raise SystemExit(
            f"values.yaml: no `# --` description for {names}: "
            "add one above each key (see the other values)"
        )
    table = "| Key | Type | Default | Description |\n|---|---|---|---|\n" + "".join(
        f"| `{row.name}` | {row.type} | `{_cell(row.default)}` | {_cell(row.description)} |\n"
        for row in rows
    )
    return _TEMPLATE.format(
        name=chart["name"],
        version=chart["version"],
        app_version=chart["appVersion"],
        kube_version=chart.get("kubeVersion", ""),
        description=" ".join(str(chart["description"]).split()),
        table=table,
    )


_TEMPLATE = """\
<!-- Generated by scripts/chart_readme.py from values.yaml: edit those comments and run
`make chart-docs`. tests/chart/test_readme.py fails when this file is out of date. -->
# {name}

{description}

Chart version {version}, app version {app_version}, Kubernetes `{kube_version}` (native
sidecars). Before installing, set up Vault's policies and roles:
[docs/vault-setup.md](../../docs/vault-setup.md).

## Install

```sh
helm install captcha-key-agent charts/captcha-key-agent -n captcha-system --create-namespace \\
  --set vault.address=https://vault.vault.svc:8200
helm test captcha-key-agent -n captcha-system   # posts a harmless review to the webhook
```

## Upgrade

```sh
helm upgrade captcha-key-agent charts/captcha-key-agent -n captcha-system --reuse-values
```

The CaptchaKeyBinding CRD is a template (not in `crds/`), so an upgrade upgrades it too.
Pods already running keep the sidecar they were created with; new pods get the new one.

## Uninstall

```sh
helm uninstall captcha-key-agent -n captcha-system
```

The CRD stays (`crds.keep: true`, so that uninstalling does not delete every binding);
remove it, and with it every CaptchaKeyBinding, with
`kubectl delete crd captchakeybindings.captchakeys.io`. Running pods keep their key file
until they restart.

## Values

{table}"""


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = README.read_text() if README.exists() else ""
        if current != text:
            print(
                f"{README.relative_to(ROOT)} is out of date: run make chart-docs", file=sys.stderr
            )
            return 1
        return 0
    if "--write" in argv:
        README.write_text(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
