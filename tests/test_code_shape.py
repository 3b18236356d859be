"""The code's shape, held by the suite: small functions and formatting without escapes.

- Every function and method of the product (``agent/``, the Python reader) has a
  cyclomatic complexity of at most 15, as radon counts it: above that, a function says
  more than one rule and wants splitting.
- No comment that switches ruff's formatter off for a statement, in the code or its
  tests: code that needs the formatter switched off is code that formats badly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [ROOT / "agent", ROOT / "readers" / "python" / "captchakeys"]
FORMATTED = [*PRODUCT, ROOT / "scripts", ROOT / "tests"]
MAX_COMPLEXITY = 15


def _sources(folders: list[Path]) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def test_the_product_has_sources_to_measure() -> None:
    assert len(_sources(PRODUCT)) > 40


@pytest.mark.parametrize("path", _sources(PRODUCT), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_more_complex_than_fifteen(path: Path) -> None:
    too_complex = [
        f"{block.fullname} (line {block.lineno}): {block.complexity}"
        for block in cc_visit(path.read_text())
        if block.complexity > MAX_COMPLEXITY
    ]
    assert not too_complex, f"split these into smaller functions: {too_complex}"


def test_nothing_switches_the_formatter_off() -> None:
    marker = "fmt: " + "skip"
    escapes = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _sources(FORMATTED)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if marker in line
    ]
    assert not escapes, f"write these so that ruff formats them well: {escapes}"
