"""What one request to the test rig's API costs as a test goes on (issue 14, item 5).

The rig (tests/rig/kube.py) stands in for kube-apiserver in the suite and in the bench;
its per-request cost must not grow with the number of requests served, or late figures
measure the rig. Prints the mean and median latency of a GET per batch of requests:

    PYTHONPATH=$PWD .venv/bin/python scripts/rig_request_cost.py [TOTAL] [BATCH]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp

from tests.rig.kube import RealisticKubernetes

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def measure(rig: RealisticKubernetes, total: int) -> list[float]:
    """Latency in seconds of ``total`` sequential GETs of one object."""
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
    await rig.call("POST", CONFIGMAPS, probe)
    headers = {"Authorization": f"Bearer {rig.admin_token}"}
    seconds: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(total):
            start = time.perf_counter()
            async with session.get(f"{rig.api_url}{CONFIGMAPS}/probe") as response:
                await response.read()
            seconds.append(time.perf_counter() - start)
    return seconds


def main(total: int = 2000, batch: int = 500) -> None:
    rig = RealisticKubernetes()
    rig.start()
    try:
        seconds = asyncio.run(measure(rig, total))
    finally:
        rig.stop()
    for first in range(0, total, batch):
        chunk = seconds[first : first + batch]
        print(
            f"requests {first + 1:5d}-{first + len(chunk):5d}: "
            f"mean {statistics.mean(chunk) * 1000:6.2f} ms, "
            f"median {statistics.median(chunk) * 1000:6.2f} ms"
        )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
