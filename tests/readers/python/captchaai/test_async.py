"""What only the asyncio client promises: its waits never block the event loop.

Covers: concurrent solves on one AsyncCaptchaAIClient overlap (total time close to one
solve, not the sum), and other tasks keep running while a solve waits.
"""

from __future__ import annotations

import asyncio
import time

from captchakeys import KeyReader
from captchakeys.captchaai import AsyncCaptchaAIClient, RecaptchaV2, Timing
from tests.readers.python.captchaai.conftest import TASK_PAGEURL, TASK_SITEKEY
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

TASK = RecaptchaV2(sitekey=TASK_SITEKEY, pageurl=TASK_PAGEURL)
SLOW = Timing(initial_wait=0.3, poll_interval=0.1, max_polls=5)  # one solve: >= 0.5 s.


async def test_concurrent_solves_overlap(service: FakeCaptchaAI, reader: KeyReader) -> None:
    service.polls_until_ready = 2
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with AsyncCaptchaAIClient(reader, base_url=service.base_url, timing=SLOW) as client:
        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        tokens = await asyncio.gather(*(client.solve(TASK) for _ in range(4)))
        elapsed = time.monotonic() - started
        ticking.cancel()

    assert tokens == [service.token] * 4
    assert len(service.submits()) == 4
    assert 0.5 <= elapsed < 1.5, "four solves of >= 0.5 s each should overlap"
    assert ticks >= 20, "the event loop should keep running other tasks during the waits"
