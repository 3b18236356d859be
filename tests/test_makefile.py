"""The Makefile's own contract: ``make help``, its installs and ``make clean``.

Covers: ``make help`` (also the default goal) lists every target the Makefile declares,
each with a description; the demo's and the suite's installs each put readers/python
(captchakeys-reader, not on PyPI) in the same pip command as the agent, so that the
agent's dependency on it resolves; ``make clean`` removes everything the targets create
(.venv, .tools, build/, caches, egg-info, the reader's build/ and egg-info, __pycache__;
with buildah, the images) and nothing tracked, in a copy of the tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"


def declared_targets() -> set[str]:
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE.read_text(), re.M)
    assert phony is not None
    return set(phony.group(1).split())


def test_help_lists_every_target() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(MAKEFILE)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=30,
    )
    listed = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^  ([a-z-]+)\s+(\S.*)$", result.stdout, re.M)
    }
    assert set(listed) == declared_targets()
    assert all(description.strip() for description in listed.values())


def test_each_install_brings_the_reader_in_the_same_pip_command() -> None:
    stamps = [".venv/.installed-demo", ".venv/.installed-dev"]
    dry_run = ["make", "--no-print-directory", "--dry-run", "--always-make", "-f", str(MAKEFILE)]
    result = subprocess.run(
        [*dry_run, *stamps], capture_output=True, text=True, check=True, cwd=ROOT, timeout=30
    )
    installs = [
        line.partition(" install --quiet ")[2]
        for line in result.stdout.splitlines()
        if " install --quiet -e " in line
    ]
    assert installs == [
        "-e './readers/python' -e '.[demo]'",
        "-e './readers/python[client]' -e '.[dev]'",
    ]


def test_clean_removes_what_targets_create(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(MAKEFILE, tree / "Makefile")
    (tree / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "build_images.sh", tree / "scripts" / "build_images.sh")
    created = [
        ".venv/bin",
        ".tools",
        "build/rootfs",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".import_linter_cache",
        "dist",
        "captcha_key_agent.egg-info",
        "readers/python/captchakeys_reader.egg-info",
        "readers/python/build",
        "agent/sidecar/__pycache__",
        "tests/__pycache__",
        "scripts/__pycache__",
    ]
    for path in created:
        (tree / path).mkdir(parents=True)
        (tree / path / "artifact").write_text("x")
    kept = tree / "agent" / "sidecar" / "agent.py"
    kept.write_text("# tracked source\n")
    # Names no image exists under, so that the real ones `make image` built stay.
    env = {**os.environ, "LOCAL_BASE_IMAGE": "localhost/captcha-key-agent-clean-test:none"}
    subprocess.run(
        ["make", "clean", "IMAGE_TAG=0.0.0-clean-test"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert [path for path in created if (tree / path).exists()] == []
    assert kept.read_text() == "# tracked source\n"


def test_clean_covers_everything_gitignored(tmp_path: Path) -> None:
    """What the targets create is what .gitignore ignores: clean must remove each kind."""
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(MAKEFILE, tree / "Makefile")
    shutil.copy(ROOT / "scripts" / "build_images.sh", tree / "scripts" / "build_images.sh")
    patterns = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    made = []
    for pattern in filter(None, patterns):
        name = pattern.strip("/").replace("*", "captcha_key_agent")
        # A pattern without a slash matches at any depth: put that one inside a package.
        path = tree / "agent" / "sidecar" / name if name == "__pycache__" else tree / name
        path.mkdir(parents=True, exist_ok=True)
        made.append(path)
    env = {**os.environ, "LOCAL_BASE_IMAGE": "localhost/captcha-key-agent-clean-test:none"}
    subprocess.run(
        ["make", "clean", "IMAGE_TAG=0.0.0-clean-test"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert [str(path.relative_to(tree)) for path in made if path.exists()] == []
