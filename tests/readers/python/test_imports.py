"""What ``captchakeys`` brings into an application's process: the promise of its install.

Covers, each in a fresh interpreter:
- the reader loads nothing outside the standard library and ``watchdog`` (nothing of
  the agent, no httpx), with kopf, hvac, kubernetes, aiohttp and requests made
  unimportable;
- the key file's format (what the key agent imports) loads not even ``watchdog``: the
  reader is loaded on first use of its names;
- the probe can see a dependency: ``import captchakeys.captchaai`` loads httpx, and still
  nothing of the agent;
- without httpx, ``import captchakeys.captchaai`` fails with a ModuleNotFoundError that
  names the extra to install, while ``import captchakeys`` still works.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Prints the top-level packages outside the standard library that importing MODULE adds.
PROBE = """
import json, sys
for blocked in ("agent", "kopf", "hvac", "kubernetes", "aiohttp", "requests"):
    sys.modules[blocked] = None  # makes any import of it fail.
before = set(sys.modules)
import {module}
added = {{name.partition(".")[0] for name in set(sys.modules) - before}}
print(json.dumps(sorted(added - set(sys.stdlib_module_names))))
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def added_packages(module: str) -> set[str]:
    result = run(PROBE.format(module=module))
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_the_reader_needs_only_the_standard_library_and_watchdog() -> None:
    assert added_packages("captchakeys.reader") == {"captchakeys", "watchdog"}


def test_the_format_alone_loads_no_file_watcher() -> None:
    assert added_packages("captchakeys.keyfile") == {"captchakeys"}
    assert added_packages("captchakeys") == {"captchakeys"}


def test_the_readers_names_load_it_on_first_use() -> None:
    result = run("import sys, captchakeys; captchakeys.KeyReader; print('watchdog' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_the_client_adds_httpx_and_nothing_of_the_agent() -> None:
    added = added_packages("captchakeys.captchaai")
    assert {"captchakeys", "httpx"} <= added
    assert "agent" not in added


WITHOUT_HTTPX = """
import sys
sys.modules["httpx"] = None  # as if not installed.
import captchakeys
try:
    import captchakeys.captchaai
except ModuleNotFoundError as exc:
    print(exc.name, exc, sep="\\n")
"""


def test_the_client_without_httpx_names_the_extra_to_install() -> None:
    result = run(WITHOUT_HTTPX)
    assert result.returncode == 0, result.stderr
    name, message = result.stdout.splitlines()
    assert name == "httpx"
    assert "pip install 'captchakeys-reader[client]'" in message
