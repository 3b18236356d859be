"""docs/contract.md's picture of the code against the code and its import contracts.

- every floor of the layers contract (pyproject.toml) is drawn in the picture, in the
  contract's order, so the picture cannot show a house the linter does not enforce;
- every module of the agent and of the Python reader has its line in the table below
  the picture, so a new module cannot arrive without saying what its one job is;
- the README's architecture section shows the same picture.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "contract.md"
SECTION = "## The code's layout"


def _section() -> str:
    text = CONTRACT.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def _picture() -> str:
    match = re.search(r"```\n(.*?)```", _section(), re.S)
    assert match, f"{CONTRACT.name} lost the picture under {SECTION!r}"
    return match.group(1)


def _layers() -> list[list[str]]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = settings["tool"]["importlinter"]["contracts"]
    (layered,) = [c for c in contracts if c["type"] == "layers" and "agent.cli" in c["layers"]]
    return [[name.strip() for name in re.split(r"[|:]", floor)] for floor in layered["layers"]]


def test_the_picture_draws_every_floor_in_the_contracts_order() -> None:
    picture = _picture()
    positions = []
    for floor in _layers():
        for module in floor:
            assert re.search(rf"\b{re.escape(module)}\b", picture), f"{module} is not drawn"
        positions.append(min(picture.index(module) for module in floor))
    assert positions == sorted(positions), "the picture's floors are not in the contract's order"


def _modules() -> list[Path]:
    roots = [ROOT / "agent", ROOT / "readers" / "python" / "captchakeys"]
    return sorted(
        path
        for root in roots
        for path in root.rglob("*.py")
        if path.name != "__init__.py" and not path.name.startswith("_")
    )


def test_every_module_has_its_line_in_the_table() -> None:
    section = _section()
    missing = []
    for path in _modules():
        relative = path.relative_to(ROOT).as_posix()
        folder = path.parent.relative_to(ROOT).as_posix()
        in_folder = f"`{folder}/" in section or f"`{path.parent.name}/`" in section
        named = f"`{relative}`" in section or (f"`{path.name}`" in section and in_folder)
        if not named:
            missing.append(relative)
    assert not missing, f"say in {CONTRACT.name} what these modules are for: {missing}"


def test_the_readme_shows_the_same_picture() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Architecture of the code" in readme
    assert _picture() in readme, "README.md and docs/contract.md draw different houses"
